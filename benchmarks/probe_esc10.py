"""ESC-10 linear probe on esc50_mini (ESC-10 classes, folds 1 and 2, 160 clips): SVM-MFCC and random subnet.

Runs `avts-probe` in-process for each feature kind, writes its RESULTS JSON and confusion PNG under
``--out``, and prints one table (per-fold accuracy, mean ± std, feature size, wall time). Reference: Piczak's
SVM-MFCC on ESC-10 is 67.5% (5 folds, 400 clips, training on 320 per fold); here each fold trains on 80 clips.
A harness check gives the training set a size closer to Piczak's: the same 160 clips as a folder per class
(symlinks) with 5 stratified folds by name hash (``avts-probe --src DIR --folds 5``), 128 training clips per
fold — not the data set's folds, so only a check that the MFCC + SVM harness lands near the published figure.

    .venv/bin/python benchmarks/probe_esc10.py [--esc DIR] [--out DIR] [--features mfcc random]

``--esc`` defaults to ``$AVTS_SHARED_DATA/esc50_mini``, else ``../shared/data/esc50_mini`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_results import machine_line  # noqa: E402

from trainer.downstream.probe_cli import main as probe_main  # noqa: E402


def default_esc() -> Path:
    """esc50_mini under ``$AVTS_SHARED_DATA``, else under ``../shared/data`` beside the repository."""
    shared = os.environ.get("AVTS_SHARED_DATA")
    return (Path(shared) if shared else REPO.parent / "shared" / "data") / "esc50_mini"


def harness_check(meta: Path, out: Path) -> dict | None:
    """MFCC + SVM with 5 stratified folds over the CSV's clips laid out as a folder per class (symlinks)."""
    import csv

    layout = out / "by-class"
    with meta.open(newline="") as handle:
        for row in csv.DictReader(handle):
            source = (meta.parent / row["audio_file"]).resolve()
            link = layout / row["category"] / source.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(source)
    result = out / "mfcc-5-hashed-folds.json"
    if probe_main(["--src", str(layout), "--folds", "5", "--features", "mfcc", "--out", str(result)]) != 0:
        return None
    return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> int:
    """Probe each feature kind and print the table; 1 when the data set is missing or a probe fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--esc", type=Path, default=default_esc(), help="the esc50_mini folder")
    parser.add_argument("--out", type=Path, default=Path("runs/probe-esc10"), help="results JSON and PNGs")
    parser.add_argument("--features", nargs="+", default=["mfcc", "random"], choices=["mfcc", "random"])
    parser.add_argument("--subclips", type=int, default=10, help="2-s sub-clips per file (random)")
    args = parser.parse_args(argv)
    console = Console()
    meta = args.esc / "esc50_mini.csv"
    if not meta.is_file():
        console.print(f"esc50_mini not found: {meta} (pass --esc or set AVTS_SHARED_DATA)", highlight=False)
        return 1
    results = {}
    for features in args.features:
        extra = ["--subclips", str(args.subclips)] if features == "random" else []
        out = args.out / f"{features}.json"
        started = time.monotonic()
        if probe_main(["--meta", str(meta), "--features", features, *extra, "--out", str(out)]) != 0:
            return 1
        results[features] = json.loads(out.read_text()) | {"bench_wall_s": time.monotonic() - started}
    if "mfcc" in args.features:
        check = harness_check(meta, args.out)
        if check is None:
            return 1
        console.print(
            f"harness check (mfcc, 5 stratified hashed folds over the {check['n_files']} clips, "
            f"{round(check['n_files'] * 4 / 5)} training clips per fold): {check['mean_accuracy']:.1%} ± "
            f"{check['std_accuracy']:.1%} (folds {', '.join(f'{v:.1%}' for v in check['folds'].values())}); "
            "Piczak's MFCC + SVM on ESC-10: 67.5%",
            highlight=False,
        )
    folds = list(next(iter(results.values()))["folds"])
    table = Table(title=f"ESC-10 (esc50_mini, folds {', '.join(folds)}): linear SVM probe")
    for column in ("features", *(f"fold {name}" for name in folds), "mean ± std", "dims", "clips", "wall s"):
        table.add_column(column, justify="left" if column == "features" else "right")
    for features, result in results.items():
        table.add_row(
            features,
            *(f"{result['folds'][name]:.1%}" for name in folds),
            f"{result['mean_accuracy']:.1%} ± {result['std_accuracy']:.1%}",
            str(result["feature_dim"]),
            str(result["subclips"] or 1),
            f"{result['bench_wall_s']:.0f}",
        )
    console.print(table)
    files = {result["n_files"] for result in results.values()}
    console.print(
        f"files: {', '.join(map(str, sorted(files)))}; clips: 2-s sub-clips per file (1 = whole clip); "
        f"machine: {machine_line()}; results and confusion matrices in {args.out}/",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
