"""Training learns: `avts-synth` videos → `avts-ingest` → a short CPU run of `avts-train --recipe cpu-demo` reaches
AVTS accuracy well above chance (50%) on held-out videos.

Where no GPU is at hand this is the only guard against a silent learning regression anywhere on the path
(loader, augmentation, pair sampler, loss, model, optimizer): every other test checks pieces, this one checks
that the pieces still learn together. It builds its own data (128 videos of 4 s at 48 px, ~25% held out) and
trains the `cpu-demo` recipe for 5 of its 8 epochs. Cost: about 2 minutes on a 2-core CPU (figures in
benchmarks/RESULTS.md, "Learning on a CPU"); more when other jobs share the box. The recipe's precedence
rules (explicit flag > recipe > defaults) are checked here too (instant).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.synth import SynthConfig, generate
from tests.conftest import ingest_with_pool
from trainer.cli import parse_args
from trainer.config import TrainConfig
from trainer.recipes import RECIPES, get_recipe, recipe_config, unknown_fields
from trainer.train import train

VIDEOS = 128
EPOCHS = 5  # of the recipe's 1024 clips; the recipe leaves the chance plateau after ~3000 clips
THRESHOLD = 0.75  # 0.88-0.98 after 5 epochs with seeds 0-2; chance and the collapsed plateau give ~0.5


@pytest.fixture(scope="module")
def synth_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of :data:`VIDEOS` synthetic videos; ``<root>/shards`` and ``<root>/manifests``."""
    root = tmp_path_factory.mktemp("learning")
    generate(SynthConfig(out=root / "videos", videos=VIDEOS, duration=4.0, size=48, seed=11, workers=2))
    ingest_with_pool(
        root / "videos", root / "shards", "--shard-size", "16", "--short-side", "48", "--val-fraction", "0.25"
    )
    return root / "shards"


def test_training_on_synthetic_data_learns_synchronization(synth_shards: Path, tmp_path: Path) -> None:
    config = recipe_config(
        "cpu-demo", shards=str(synth_shards), out=tmp_path / "run", epochs=EPOCHS, device="cpu", plain=True
    )
    started = time.monotonic()
    result = train(config, Console(stderr=True, soft_wrap=True))
    elapsed = time.monotonic() - started
    record = result.last_epoch
    assert record["val_pairs_easy"] >= 100, "too few validation pairs for the figure to mean anything"
    curve = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert record["val_acc_easy"] >= THRESHOLD, (
        f"AVTS accuracy {record['val_acc_easy']:.3f} < {THRESHOLD} after {config.epochs} epochs ({elapsed:.0f} s): "
        f"training no longer learns synchronization. Epoch records:\n" + "\n".join(curve)
    )
    assert (tmp_path / "run" / "accuracy.png").exists() and (tmp_path / "run" / "loss.png").exists()


def test_recipes_name_only_train_config_fields() -> None:
    assert RECIPES and all(unknown_fields(recipe) == [] for recipe in RECIPES.values())


def test_without_a_recipe_the_defaults_are_the_papers() -> None:
    config = parse_args(["--shards", "s", "--out", "o"])
    assert (config.optimizer, config.lr, config.batch_size, config.epochs, config.margin) == ("sgd", 0.01, 16, 90, 0.99)
    assert config == TrainConfig(shards="s", out=Path("o"))


def test_explicit_flags_win_over_the_recipe_which_wins_over_the_defaults() -> None:
    config = parse_args(
        ["--shards", "s", "--out", "o", "--lr", "0.003", "--recipe", "cpu-demo", "--width", "16", "--optimizer", "sgd"]
    )
    assert (config.lr, config.width, config.optimizer) == (0.003, 16, "sgd")  # explicit, even equal to a default
    demo = get_recipe("cpu-demo").settings
    assert (config.crop_size, config.audio_width, config.epoch_size) == (
        demo["crop_size"],
        demo["audio_width"],
        demo["epoch_size"],
    )  # the recipe's
    assert (config.momentum, config.margin) == (0.9, 0.99)  # defaults the recipe leaves alone
    assert config == recipe_config("cpu-demo", shards="s", out=Path("o"), lr=0.003, width=16, optimizer="sgd")


def test_an_unknown_recipe_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--shards", "s", "--out", "o", "--recipe", "gpu-giant"])
    assert exit_info.value.code == 2
    assert "cpu-demo" in capsys.readouterr().err
    with pytest.raises(ValueError, match="known: cpu-demo"):
        get_recipe("gpu-giant")
