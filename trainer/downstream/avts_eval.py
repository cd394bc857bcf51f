"""`avts-eval`: AVTS accuracy of a trained checkpoint on held-out shards, the paper's way (§3.2).

Two test mixes (easy negatives only, and 75% easy / 25% hard), the threshold rule "in sync iff distance < τ"
and, when the checkpoint has the sync head of the cross-entropy stage, the head's argmax. τ is never chosen on
the videos it is scored on: either the held-out videos are split into two halves by a stable hash of their key
(τ chosen on one half, accuracy on the other, both ways, and the mean), or τ comes from other shards
(``tau_shards``, e.g. the training-time validation shards) and the accuracy from all of ``shards``.
Pairs are drawn by the training pair sampler from seeded generators, so the same flags give the same numbers.
The scoring is :func:`trainer.evaluate.score_pairs`, the code of the in-training validation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from avts.config_cli import option, output_file_checks, validate
from avts.schema import FEATURE_RATE, VIDEO_FPS
from trainer.augment import AudioNormalizer
from trainer.checkpoint import CheckpointError, TrainedModel, load_trained
from trainer.data import WINDOW, LoaderSpec, build_loader
from trainer.distributed import device_check
from trainer.evaluate import (
    EVAL_MIXES,
    HALF_NAMES,
    HALVES,
    HeldOutScores,
    ScoredPairs,
    ThresholdTransfer,
    cross_half,
    half_of,
    head_accuracy,
    score_pairs,
    transfer_threshold,
)
from trainer.sampler import PairSampler
from trainer.shardlist import expand_shards
from trainer.step import InputSettings

MIX_TITLES = {"easy": "easy negatives only", "mixed": "75% easy / 25% hard"}
TABLE_NAMES = {"easy": "easy", "mixed": "75/25"}


class EvalError(Exception):
    """The evaluation cannot run or produced nothing; the message says why."""


@dataclass(frozen=True)
class EvalConfig:
    """What `avts-eval` needs; its flags are made from these fields."""

    checkpoint: Path = option(help="avts-train checkpoint (e.g. runs/x/checkpoints/last.pt)")
    shards: str = option(help="held-out shards: brace pattern, <a..b> form, folder, list file or URLs")
    tau_shards: str | None = option(
        None,
        help="shards to choose τ on, of videos disjoint from --shards (e.g. the "
        "training-time validation shards); unset: τ from one half of the "
        "--shards videos, scored on the other half, both ways",
    )
    split: str = option(
        "val",
        help="which shards of a folder are read: val (val-*.tar), test (test-*.tar) or train (NNNN.tar)",
        choices=("val", "test", "train"),
    )
    out: Path = option(Path("avts-eval.json"), help="results JSON")
    clips_per_video: int = option(4, help="evenly spaced 1-s clips per video (each makes one pair per mix)")
    batch_size: int = option(16, help="clips per batch (easy negatives come from other videos of the batch)")
    workers: int = option(2, help="loader worker processes")
    seed: int = option(1234, help="seed of the clip order and of the pair draws")
    device: str = option("auto", help="auto, cuda or cpu")

    def __post_init__(self) -> None:
        validate(
            [
                device_check(self.device),
                *output_file_checks(self.out, ".json"),
                (self.clips_per_video >= 1, "--clips-per-video must be ≥ 1"),
                (self.batch_size >= 2, "--batch-size must be ≥ 2 (easy negatives come from other videos of the batch)"),
                (self.workers >= 0, "--workers must be ≥ 0"),
            ]
        )


def pick_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(checkpoint: Path, device: torch.device) -> TrainedModel:
    """:func:`trainer.checkpoint.load_trained`, with a clear error for anything that is not a usable checkpoint
    (missing, unreadable, of another format, or weights that do not fit the architecture it declares)."""
    try:
        return load_trained(checkpoint, device)
    except CheckpointError as error:
        raise EvalError(str(error)) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise EvalError(
            f"{checkpoint} does not hold a model this version can rebuild ({type(error).__name__}: {str(error)[:300]})"
        ) from None


def input_settings(trained: TrainedModel, device: torch.device) -> InputSettings:
    """Crop, audio normalization and pair sampler as the checkpoint's training run used them."""
    config = trained.config
    sampler = PairSampler(
        WINDOW,
        round(config.get("hard_gap", 0.5) * FEATURE_RATE),
        round(config.get("super_hard_offset", 0.5) * FEATURE_RATE),
    )
    normalizer = AudioNormalizer(trained.stats.mean, trained.stats.std, device)
    return InputSettings(
        int(config.get("crop_size", 112)), tuple(config.get("crop_scales", (1.0,))), normalizer, sampler
    )


def held_out_loader(config: EvalConfig, spec: str, trained: TrainedModel, on_gpu: bool) -> Any:
    """The validation loader over ``spec``: evenly spaced clips, audio context as in training, fixed order."""
    try:
        shards = expand_shards(spec, config.split)
    except FileNotFoundError as error:
        raise EvalError(str(error)) from None
    context = round(float(trained.config.get("audio_context", 10.0)) * FEATURE_RATE)
    loader = LoaderSpec(
        shards,
        config.batch_size,
        VIDEO_FPS,
        context,
        config.seed,
        min(config.workers, len(shards)),
        training=False,
        clips_per_video=config.clips_per_video,
        pin_memory=on_gpu,
    )
    return build_loader(loader, 0)


def _check_scored(scores: HeldOutScores, spec: str, names: tuple[str, ...]) -> None:
    """Refuse to report when a group could not be paired: say which and why."""
    if not any(scores.videos):
        raise EvalError(
            f"no usable samples in {spec}: every sample lacked the .mp4, .fbank.npy or .json member or "
            "could not be decoded (see the warnings above)"
        )
    for name, videos, pairs in zip(names, scores.videos, scores.pairs["easy"], strict=True):
        if pairs.count == 0:
            raise EvalError(
                f"{name} has {len(videos)} usable video(s) in {spec}; pairs need at least 2 (easy "
                "negatives come from another video): give more videos, or choose τ on --tau-shards"
            )


def _transfer_dict(transfer: ThresholdTransfer, fit: str, scored: str) -> dict[str, Any]:
    return {"tau_chosen_on": fit, "scored_on": scored, **asdict(transfer)}


def _mix_result(
    mix: str,
    groups: list[ScoredPairs],
    names: tuple[str, ...],
    transfers: list[tuple[ThresholdTransfer, str, str]],
    head_groups: list[ScoredPairs],
) -> dict[str, Any]:
    """One mix's JSON: pairs and their kinds per group, the threshold rule's transfers and mean, the head."""
    return {
        "negatives": MIX_TITLES[mix],
        "pairs": {name: pairs.count for name, pairs in zip(names, groups, strict=True)},
        "kinds": {name: pairs.kinds() for name, pairs in zip(names, groups, strict=True)},
        "threshold": {
            "accuracy": sum(t.accuracy for t, _, _ in transfers) / len(transfers),
            "transfers": [_transfer_dict(t, fit, scored) for t, fit, scored in transfers],
        },
        "head": None
        if head_accuracy(head_groups) is None
        else {"accuracy": head_accuracy(head_groups), "pairs": sum(p.count for p in head_groups)},
    }


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate ``config.checkpoint``; returns the JSON-ready results (see the README's `avts-eval` section)."""
    device = pick_device(config.device)
    trained = load_model(config.checkpoint, device)
    settings = input_settings(trained, device)
    on_gpu = device.type == "cuda"
    results: dict[str, Any] = {}
    if config.tau_shards is None:
        scores = score_pairs(
            trained.model,
            held_out_loader(config, config.shards, trained, on_gpu),
            settings,
            device,
            config.seed,
            half_of,
            HALVES,
        )
        _check_scored(scores, config.shards, tuple(f"half {name}" for name in HALF_NAMES))
        protocol = (
            "the --shards videos split in two halves by a hash of their key: τ chosen on one half and "
            "scored on the other, both ways; the accuracy is the mean of the two"
        )
        videos = {name: len(keys) for name, keys in zip(HALF_NAMES, scores.videos, strict=True)}
        clips = dict(zip(HALF_NAMES, scores.clips, strict=True))
        for mix, halves in scores.pairs.items():
            pairs = cross_half(halves)
            assert pairs is not None  # _check_scored
            transfers = [(pairs[0], "A", "B"), (pairs[1], "B", "A")]
            results[mix] = _mix_result(mix, halves, HALF_NAMES, transfers, halves)
    else:
        fit = score_pairs(
            trained.model, held_out_loader(config, config.tau_shards, trained, on_gpu), settings, device, config.seed
        )
        _check_scored(fit, config.tau_shards, ("--tau-shards",))
        test = score_pairs(
            trained.model, held_out_loader(config, config.shards, trained, on_gpu), settings, device, config.seed + 1
        )  # draws of their own, not a replay of the τ set's
        _check_scored(test, config.shards, ("--shards",))
        shared = fit.videos[0] & test.videos[0]
        if shared:
            raise EvalError(
                f"--tau-shards and --shards share {len(shared)} video(s) (e.g. {sorted(shared)[0]}); "
                "τ must be chosen on other videos than the scored ones"
            )
        protocol = "τ chosen on all pairs of --tau-shards, scored on all pairs of --shards (disjoint videos)"
        videos = {"tau": len(fit.videos[0]), "test": len(test.videos[0])}
        clips = {"tau": fit.clips[0], "test": test.clips[0]}
        for mix in EVAL_MIXES:
            fitted, scored = fit.pairs[mix][0], test.pairs[mix][0]
            results[mix] = _mix_result(
                mix, [fitted, scored], ("tau", "test"), [(transfer_threshold(fitted, scored), "tau", "test")], [scored]
            )
    return {
        "checkpoint": str(config.checkpoint),
        "model_spec": trained.spec.to_dict(),
        "shards": config.shards,
        "tau_shards": config.tau_shards,
        "protocol": protocol,
        "seed": config.seed,
        "clips_per_video": config.clips_per_video,
        "batch_size": config.batch_size,
        "device": device.type,
        "videos": videos,
        "clips": clips,
        "mixes": results,
    }


def results_table(results: dict[str, Any]) -> Table:
    """A rich table of :func:`run_eval`'s results: one row per τ transfer, their mean, and the head."""
    table = Table(
        title=f"AVTS accuracy of {Path(results['checkpoint']).name}",
        caption="test mixes: easy = easy negatives only, 75/25 = 75% easy / 25% hard; "
        "d < τ = the distance rule, head = the sync head's argmax",
    )
    for column in ("test mix", "rule", "τ from", "τ", "scored", "pairs", "accuracy"):
        table.add_column(column, justify="right" if column in ("τ", "pairs", "accuracy") else "left")
    for name, mix in results["mixes"].items():
        short = TABLE_NAMES[name]
        for transfer in mix["threshold"]["transfers"]:
            table.add_row(
                short,
                "d < τ",
                transfer["tau_chosen_on"],
                f"{transfer['tau']:.4f}",
                transfer["scored_on"],
                str(transfer["scored_pairs"]),
                f"{transfer['accuracy']:.4f}",
            )
        if len(mix["threshold"]["transfers"]) > 1:
            table.add_row(short, "d < τ", "", "", "mean", "", f"[bold]{mix['threshold']['accuracy']:.4f}")
        if mix["head"] is not None:
            table.add_row(
                short, "head", "-", "-", "all", str(mix["head"]["pairs"]), f"[bold]{mix['head']['accuracy']:.4f}"
            )
    return table


def print_results(results: dict[str, Any], console: Console) -> None:
    """The table, and the video counts behind it."""
    console.print(results_table(results))
    console.print(results["protocol"], highlight=False)
    counts = ", ".join(
        f"{name}: {count} videos / {results['clips'][name]} clips" for name, count in results["videos"].items()
    )
    console.print(counts, highlight=False)
