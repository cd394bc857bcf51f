"""`avts-probe`: linear-SVM probe of audio features on a labelled sound set (paper §3.4, Table 3).

    avts-probe --meta ESC-50-master/meta/esc50.csv --features mfcc --out mfcc.json
    avts-probe --meta esc50.csv --features avts --checkpoint runs/k/last.pt --subclips 10 --out avts.json
    avts-probe --src dcase2014/ --folds 5 --features random --subclips 60 --out random.json

Exit status: 0 with results written, 1 with a clear one-line message when nothing could be evaluated or the
checkpoint cannot be used, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from avts.config_cli import add_config_arguments, config_from_args, option, output_file_checks, validate
from avts.console import USER_ERRORS, error_console, interruptible, report_failure
from avts.progress import CountProgress
from avts.stats import FeatureStats
from trainer.checkpoint import CheckpointError
from trainer.distributed import device_check
from trainer.downstream.audio_input import FeatureTable, decode_table, subclip_filterbanks
from trainer.downstream.avts_eval import pick_device
from trainer.downstream.labeled_audio import (
    DEFAULT_FOLDS,
    LabeledFile,
    LayoutError,
    read_csv_layout,
    read_folder_layout,
)
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
    DEFAULT_POOL_TEXT,
    AudioConv5Extractor,
    load_audio_subnet,
    parse_pool,
    random_audio_net,
    window_stats,
)

TOOL = "avts-probe"
MAX_SUBCLIPS = 100  # sub-clips per file: beyond this the features of a few files no longer fit in memory
FEATURES = {
    "mfcc": "SVM-MFCC baseline (Table 3 row 1, Piczak): mean and std of 13 MFCCs per clip",
    "avts": "conv5 of the AVTS-trained audio subnet on 2-s sub-clips (Table 3, 'Our AVTS features')",
    "random": "conv5 of a randomly initialized, untrained audio subnet on 2-s sub-clips (a floor; not the "
    "paper's 'our audio subnet' row, which was trained on the benchmark)",
}


@dataclass(frozen=True)
class ProbeConfig:
    """What `avts-probe` needs; its flags are made from these fields (exactly one of ``meta`` and ``src``)."""

    features: str = option(help="; ".join(f"{name}: {text}" for name, text in FEATURES.items()), choices=list(FEATURES))
    meta: Path | None = option(None, help="ESC-50-style CSV (filename, fold or split, category)")
    src: Path | None = option(None, help="folder with one sub-folder of audio files per class")
    checkpoint: Path | None = option(None, help="avts-train checkpoint (--features avts)")
    audio_dir: Path | None = option(
        None,
        help="folder holding the CSV's `filename`s (default: the audio_file "
        "column, else audio/ beside the CSV's folder)",
    )
    folds: int | None = option(None, help=f"--src: folds dealt by name hash (unset: {DEFAULT_FOLDS})")
    subclips: int = option(10, help="equally spaced 2-s sub-clips per file")
    pool: str = option(
        DEFAULT_POOL_TEXT, metavar="BANDSxTIME", help="adaptive max pool of conv5: 256 x BANDS x TIME dims per sub-clip"
    )
    stats: Path | None = option(
        None,
        help="--features random: per-filter mean/std from this stats.json (default: "
        "computed over every sub-clip frame of the probed files)",
    )
    seed: int = option(0, help="--features random: weight seed")
    width: int = option(64, help="--features random: AudioNet width")
    zcr: bool = option(False, help="--features mfcc: add zero-crossing-rate mean/std")
    svm_c: float = option(1.0, help="LinearSVC C, not tuned")
    batch_size: int = option(32, help="sub-clips per network forward pass")
    device: str = option("auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    out: Path | None = option(
        None,
        help="results JSON (default: probe-<features>.json); the confusion matrix goes "
        "to <out stem>-confusion.png beside it",
    )
    plain: bool | None = option(None, help="plain progress lines (automatic when not on a terminal or CI is set)")

    def __post_init__(self) -> None:
        """Refuse a missing or doubled source and flags the chosen features would silently ignore."""
        validate(
            [
                device_check(self.device),
                (self.meta is not None or self.src is not None, "one of --meta or --src is required"),
                (self.meta is None or self.src is None, "--meta and --src cannot be combined"),
                (self.meta is None or not self.meta.is_dir(), "--meta must be a CSV file, not a folder (or use --src)"),
                (self.folds is None or self.src is not None, "--folds applies to --src: a CSV brings its own folds"),
                (self.folds is None or self.folds >= 2, "--folds must be at least 2"),
                (self.features != "avts" or self.checkpoint is not None, "--features avts needs --checkpoint"),
                *(
                    (not value or self.features == features, f"{flag} only applies to --features {features}")
                    for flag, value, features in (
                        ("--checkpoint", self.checkpoint, "avts"),
                        ("--stats", self.stats, "random"),
                        ("--zcr", self.zcr, "mfcc"),
                    )
                ),
                *(output_file_checks(self.out, ".json") if self.out is not None else []),
                (self.out is None or self.stats is None or self.out != self.stats, "--out would overwrite --stats"),
                (1 <= self.subclips <= MAX_SUBCLIPS, f"--subclips must be in [1, {MAX_SUBCLIPS}]"),
                (math.isfinite(self.svm_c) and self.svm_c > 0, "--svm-c must be a finite number > 0"),
                (self.width >= 1, "--width must be ≥ 1"),
                (self.batch_size >= 1, "--batch-size must be at least 1"),
            ]
        )
        parse_pool(self.pool)

    @property
    def pool_size(self) -> tuple[int, int]:
        """``pool`` as ``(bands, time_bins)``."""
        return parse_pool(self.pool)

    @property
    def source(self) -> Path:
        """The CSV or the folder probed."""
        return self.meta or self.src  # type: ignore[return-value]  # __post_init__ makes one of them set


def parse_args(argv: list[str] | None) -> ProbeConfig:
    """Command-line flags → :class:`ProbeConfig` (one flag per field, defaults from the dataclass)."""
    parser = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n")[0])
    add_config_arguments(parser, ProbeConfig)
    return config_from_args(ProbeConfig, parser.parse_args(argv), parser)


def _conv5_table(
    config: ProbeConfig, files: list[LabeledFile], progress_console: Console
) -> tuple[FeatureTable, dict[str, Any]]:
    """Sub-clip filterbanks of every file, then pooled conv5 features of the trained or random subnet."""
    with CountProgress("filterbanks", len(files), "files", progress_console, config.plain) as progress:
        table = decode_table(files, partial(subclip_filterbanks, k=config.subclips), progress)
    if not table.files:
        return table, {}
    if config.features == "avts":
        assert config.checkpoint is not None  # ProbeConfig requires it with --features avts
        net, mean, std = load_audio_subnet(config.checkpoint)
        normalization = f"stats stored in {config.checkpoint}"
    else:
        net = random_audio_net(config.seed, config.width)
        if config.stats is not None:
            stats = FeatureStats.load(config.stats)
            mean, std, normalization = stats.mean, stats.std, f"stats from {config.stats}"
        else:
            (mean, std), normalization = window_stats(table.features), "all probed sub-clip frames (no labels)"
    device = pick_device(config.device)
    extractor = AudioConv5Extractor(net, mean, std, config.pool_size, device, config.batch_size)
    with CountProgress("conv5", len(table.features), "sub-clips", progress_console, config.plain) as progress:
        table = table.with_features(extractor(table.features, progress.advance))
    info = {
        "subclips": config.subclips,
        "pool": list(config.pool_size),
        "normalization": normalization,
        "device": str(device),
    }
    if config.features == "random":
        info.update(seed=config.seed, width=config.width)
    return table, info


def _mfcc_table(
    config: ProbeConfig, files: list[LabeledFile], progress_console: Console
) -> tuple[FeatureTable, dict[str, Any]]:
    """One MFCC mean/std vector per file."""
    with CountProgress("mfcc", len(files), "files", progress_console, config.plain) as progress:
        table = decode_table(files, lambda signal: (mfcc_stats(signal, config.zcr)[None], False), progress)
    return table, {"subclips": None, "sample_rate": 16_000, "n_mfcc": 13, "zcr": config.zcr}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `avts-probe`."""
    config = parse_args(argv)
    return interruptible(
        TOOL, "results are written only at the end; rerun the same command", lambda: run_command(config)
    )


def run_command(config: ProbeConfig) -> int:
    """The command's work once its flags are parsed; returns the exit status."""
    console, errors = Console(), error_console()
    out = config.out or Path(f"probe-{config.features}.json")
    png = out.with_name(f"{out.stem}-confusion.png")
    started = time.monotonic()
    try:
        labeled = (
            read_csv_layout(config.meta, config.audio_dir)
            if config.meta is not None
            else read_folder_layout(config.source, config.folds or DEFAULT_FOLDS)
        )
        extract = _mfcc_table if config.features == "mfcc" else _conv5_table
        table, info = extract(config, labeled.files, errors)
        table.skipped = labeled.skipped + table.skipped
        for item in table.skipped:
            errors.print(f"skipped {item.path}: {item.reason}", highlight=False, markup=False)
        extracted = time.monotonic()
        result = run_probe(table, labeled.scheme, config.svm_c)
    except (LayoutError, ProbeError, CheckpointError, *USER_ERRORS) as error:
        return report_failure(errors, TOOL, error)
    title = f"{TOOL} {config.features}: {config.source}"
    settings = {
        "features": config.features,
        "description": FEATURES[config.features],
        "source": str(config.source),
        "scheme": labeled.scheme,
        "svm_c": config.svm_c,
        **info,
        "confusion_png": str(png),
        "extract_s": round(extracted - started, 2),
        "wall_s": round(time.monotonic() - started, 2),
    }
    write_results(out, results_dict(result, table, settings))
    save_confusion_png(result, png, title)
    print_results(result, title, console)
    console.print(
        f"{len(table.files)} files ({len(table.skipped)} skipped, {len(table.padded)} padded to 2 s); "
        f"results: {out}; confusion matrix: {png}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
