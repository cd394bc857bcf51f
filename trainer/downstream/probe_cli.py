"""`avts-probe`: linear-SVM probe of audio features on a labelled sound set (paper §3.4, Table 3).

    avts-probe --meta ESC-50-master/meta/esc50.csv --features mfcc --out mfcc.json
    avts-probe --meta esc50.csv --features avts --checkpoint runs/k/last.pt --subclips 10 --out avts.json
    avts-probe --src dcase2014/ --folds 5 --features random --subclips 60 --out random.json

Exit status: 0 with results written, 1 with a clear message when nothing could be evaluated, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from avts.progress import CountProgress
from avts.stats import FeatureStats
from trainer.downstream.audio_input import FeatureTable, decode_table, subclip_filterbanks
from trainer.downstream.labeled_audio import LabeledFile, LayoutError, read_csv_layout, read_folder_layout
from trainer.downstream.mfcc import mfcc_stats
from trainer.downstream.probe import (
    ProbeError,
    print_results,
    results_dict,
    run_probe,
    save_confusion_png,
    write_results,
)
from trainer.downstream.subclip_features import (
    DEFAULT_POOL,
    AudioConv5Extractor,
    load_audio_subnet,
    random_audio_net,
    window_stats,
)

FEATURES = {
    "mfcc": "SVM-MFCC baseline (Table 3 row 1, Piczak): mean and std of 13 MFCCs per clip",
    "avts": "conv5 of the AVTS-trained audio subnet on 2-s sub-clips (Table 3, 'Our AVTS features')",
    "random": "conv5 of a randomly initialized, untrained audio subnet on 2-s sub-clips (a floor; not the "
              "paper's 'our audio subnet' row, which was trained on the benchmark)",
}


def _pool(text: str) -> tuple[int, int]:
    """Parse ``BANDSxTIME`` (e.g. ``4x1``)."""
    try:
        bands, time_bins = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BANDSxTIME such as 4x1, got {text!r}") from None
    if bands < 1 or time_bins < 1:
        raise argparse.ArgumentTypeError(f"pool sizes must be positive, got {text!r}")
    return bands, time_bins


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags."""
    parser = argparse.ArgumentParser(prog="avts-probe", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--meta", type=Path, help="ESC-50-style CSV (filename, fold or split, category)")
    source.add_argument("--src", type=Path, help="folder with one sub-folder of audio files per class")
    parser.add_argument("--features", choices=list(FEATURES), required=True,
                        help="; ".join(f"{name}: {text}" for name, text in FEATURES.items()))
    parser.add_argument("--checkpoint", type=Path, help="avts-train checkpoint (--features avts)")
    parser.add_argument("--audio-dir", type=Path, help="folder holding the CSV's `filename`s "
                        "(default: the audio_file column, else audio/ beside the CSV's folder)")
    parser.add_argument("--folds", type=int, default=5,
                        help="folds assigned by name hash with --src (default %(default)s)")
    parser.add_argument("--subclips", type=int, default=10,
                        help="equally spaced 2-s sub-clips per file (default %(default)s)")
    parser.add_argument("--pool", type=_pool, default=DEFAULT_POOL, metavar="BANDSxTIME",
                        help="adaptive max pool of conv5: 256 x BANDS x TIME dims per sub-clip (default 4x1)")
    parser.add_argument("--stats", type=Path, help="--features random: per-filter mean/std from this stats.json "
                        "(default: computed over every sub-clip frame of the probed files)")
    parser.add_argument("--seed", type=int, default=0, help="--features random: weight seed (default %(default)s)")
    parser.add_argument("--width", type=int, default=64, help="--features random: AudioNet width (default %(default)s)")
    parser.add_argument("--zcr", action="store_true", help="--features mfcc: add zero-crossing-rate mean/std")
    parser.add_argument("--svm-c", type=float, default=1.0, help="LinearSVC C, not tuned (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sub-clips per network forward pass (default %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument("--out", type=Path, help="results JSON (default: probe-<features>.json); the "
                        "confusion matrix goes to <out stem>-confusion.png beside it")
    parser.add_argument("--plain", action="store_true", default=None,
                        help="plain progress lines (automatic when not on a terminal or CI is set)")
    return parser


def _check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse flags that would be silently ignored by the chosen features."""
    if args.features == "avts" and args.checkpoint is None:
        parser.error("--features avts needs --checkpoint")
    for flag, value, features in (("--checkpoint", args.checkpoint, "avts"), ("--stats", args.stats, "random"),
                                  ("--zcr", args.zcr, "mfcc")):
        if value and args.features != features:
            parser.error(f"{flag} only applies to --features {features}")
    if args.subclips < 1:
        parser.error("--subclips must be at least 1")


def _conv5_table(args: argparse.Namespace, files: list[LabeledFile], progress_console: Console
                 ) -> tuple[FeatureTable, dict[str, Any]]:
    """Sub-clip filterbanks of every file, then pooled conv5 features of the trained or random subnet."""
    with CountProgress("filterbanks", len(files), "files", progress_console, args.plain) as progress:
        table = decode_table(files, partial(subclip_filterbanks, k=args.subclips), progress)
    if not table.files:
        return table, {}
    if args.features == "avts":
        net, mean, std = load_audio_subnet(args.checkpoint)
        normalization = f"stats stored in {args.checkpoint}"
    else:
        net = random_audio_net(args.seed, args.width)
        if args.stats is not None:
            stats = FeatureStats.load(args.stats)
            mean, std, normalization = stats.mean, stats.std, f"stats from {args.stats}"
        else:
            (mean, std), normalization = window_stats(table.features), "all probed sub-clip frames (no labels)"
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    extractor = AudioConv5Extractor(net, mean, std, args.pool, device, args.batch_size)
    with CountProgress("conv5", len(table.features), "sub-clips", progress_console, args.plain) as progress:
        table = table.with_features(extractor(table.features, progress.advance))
    info = {"subclips": args.subclips, "pool": list(args.pool), "normalization": normalization,
            "device": str(device)}
    if args.features == "random":
        info.update(seed=args.seed, width=args.width)
    return table, info


def _mfcc_table(args: argparse.Namespace, files: list[LabeledFile], progress_console: Console
                ) -> tuple[FeatureTable, dict[str, Any]]:
    """One MFCC mean/std vector per file."""
    with CountProgress("mfcc", len(files), "files", progress_console, args.plain) as progress:
        table = decode_table(files, lambda signal: (mfcc_stats(signal, args.zcr)[None], False), progress)
    return table, {"subclips": None, "sample_rate": 16_000, "n_mfcc": 13, "zcr": args.zcr}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-probe`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combinations(parser, args)
    console, errors = Console(), Console(file=sys.stderr)
    out = args.out or Path(f"probe-{args.features}.json")
    png = out.with_name(f"{out.stem}-confusion.png")
    started = time.monotonic()
    try:
        labeled = read_csv_layout(args.meta, args.audio_dir) if args.meta else read_folder_layout(args.src, args.folds)
        extract = _mfcc_table if args.features == "mfcc" else _conv5_table
        table, info = extract(args, labeled.files, errors)
        table.skipped = labeled.skipped + table.skipped
        for item in table.skipped:
            errors.print(f"skipped {item.path}: {item.reason}", highlight=False, markup=False)
        extracted = time.monotonic()
        result = run_probe(table, labeled.scheme, args.svm_c)
    except (LayoutError, ProbeError, FileNotFoundError) as error:
        errors.print(f"avts-probe: {error}", style="bold red", highlight=False, markup=False)
        return 1
    title = f"avts-probe {args.features}: {args.meta or args.src}"
    settings = {"features": args.features, "description": FEATURES[args.features],
                "source": str(args.meta or args.src), "scheme": labeled.scheme, "svm_c": args.svm_c, **info,
                "confusion_png": str(png),
                "extract_s": round(extracted - started, 2), "wall_s": round(time.monotonic() - started, 2)}
    write_results(out, results_dict(result, table, settings))
    save_confusion_png(result, png, title)
    print_results(result, title, console)
    console.print(f"{len(table.files)} files ({len(table.skipped)} skipped, {len(table.padded)} padded to 2 s); "
                  f"results: {out}; confusion matrix: {png}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
