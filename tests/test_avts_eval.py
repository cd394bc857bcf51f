"""AVTS accuracy with τ chosen on other videos: `trainer.evaluate` (in-training validation) and `avts-eval`.

The protocol is checked on hand-made scores with known answers, and on the synthetic shards of ``conftest`` with a
hand-made "event detector" model whose accuracy is known to be high; the CLI runs on a tiny untrained checkpoint
for its contract (JSON, table, repeatable numbers, bad input). About 60 s on the 2-core CI box.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from avts.seeds import stable_int
from avts.stats import FeatureStats
from trainer.augment import AudioNormalizer
from trainer.checkpoint import save_checkpoint
from trainer.config import TrainConfig
from trainer.data import Batch, LoaderSpec, build_loader
from trainer.downstream.avts_eval_cli import main
from trainer.evaluate import (
    HALVES,
    ScoredPairs,
    batches_by_group,
    cross_half,
    evaluate,
    half_of,
    head_accuracy,
    score_pairs,
    transfer_threshold,
)
from trainer.models import build_avts
from trainer.sampler import PairSampler
from trainer.shardlist import expand_shards
from trainer.step import InputSettings

CPU = torch.device("cpu")


def tiny_checkpoint(
    folder: Path, *, declared_width: int | None = None, sync_head: bool = False, stats: Path | None = None
) -> Path:
    """An untrained tiny checkpoint as `avts-train` writes it (``declared_width``: a spec that does not fit the
    weights, as a checkpoint of another architecture would)."""
    config = TrainConfig(
        shards="unused",
        out=folder,
        width=4,
        audio_width=4,
        embed_dim=16,
        crop_size=32,
        video_time_bins=2,
        audio_time_bins=2,
        audio_context=4.0,
        objective="ce" if sync_head else "contrastive",
    )
    torch.manual_seed(0)
    model = build_avts(config.model_spec())
    spec = config.model_spec() if declared_width is None else replace(config.model_spec(), width=declared_width)
    feature_stats = FeatureStats.load(stats) if stats else FeatureStats([0.0] * 40, [1.0] * 40, 1, 1, 1.0, 0)
    return save_checkpoint(
        folder,
        {
            "model_spec": spec.to_dict(),
            "stats": feature_stats.to_dict(),
            "model": model.state_dict(),
            "config": config.to_dict(),
        },
    )


class EventDetector(torch.nn.Module):
    """A hand-made sync model for `avts-synth` scenes: per video frame of the window, how bright the picture is
    and how loud the sound is, each standardized over the window. They match when the flashes and the bursts
    line up, so in-sync pairs are close and shifted or foreign audio is far."""

    head = None

    @staticmethod
    def _standardize(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        return self._standardize(video.mean(dim=(1, 3, 4)))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        loudness = audio.mean(dim=(1, 2))
        return self._standardize(loudness.reshape(len(loudness), 25, 4).mean(-1))


def said(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def pairs(distance: list[float], label: list[int], prob: list[float] | None = None) -> ScoredPairs:
    return ScoredPairs(
        torch.tensor(distance),
        torch.tensor(label, dtype=torch.float32),
        torch.tensor([0 if y else 1 for y in label]),
        None if prob is None else torch.tensor(prob),
    )


def test_halves_are_a_stable_hash_of_the_key() -> None:
    keys = [f"video-{i}" for i in range(2000)]
    halves = [half_of(key) for key in keys]
    assert halves == [stable_int("avts-eval-half", key) % HALVES for key in keys]
    assert 900 <= sum(halves) <= 1100  # about half each


def test_tau_is_chosen_on_one_set_and_scored_on_the_other() -> None:
    a = pairs([0.1, 0.2, 0.5, 0.6], [1, 1, 0, 0])  # separable: τ = 0.35, the midpoint of 0.2 and 0.5
    b = pairs([0.3, 0.45, 0.4, 0.9], [1, 1, 0, 0])  # 0.45 is a positive above 0.35
    forward = transfer_threshold(a, b)
    assert forward.tau == pytest.approx(0.35) and forward.fit_accuracy == 1.0
    assert forward.accuracy == 0.75 and (forward.fit_pairs, forward.scored_pairs) == (4, 4)
    both = cross_half([a, b])
    assert both is not None
    assert both[1].tau == pytest.approx(0.35) and both[1].fit_accuracy == 0.75 and both[1].accuracy == 1.0
    assert cross_half([a, pairs([], [])]) is None


def test_head_accuracy_is_the_argmax() -> None:
    assert head_accuracy([pairs([0, 0, 0, 0], [1, 0, 0, 1], [0.9, 0.2, 0.6, 0.4])]) == 0.5
    assert head_accuracy([pairs([0], [1])]) is None


def fake_batch(keys: list[str]) -> Batch:
    rows = len(keys)
    return Batch(
        y=torch.arange(rows).view(rows, 1, 1, 1),
        u=torch.zeros(rows, 1),
        v=torch.zeros(rows, 1),
        feats=torch.zeros(rows, 1),
        valid=torch.zeros(rows),
        clip_start=torch.zeros(rows),
        video_id=torch.tensor([stable_int("video", key) for key in keys]),
        keys=keys,
        worker=0,
    )


def test_batches_are_regrouped_by_half_without_losing_rows() -> None:
    group = {"a1": 0, "a2": 0, "a3": 0, "b1": 1, "b2": 1, "lonely": 2}.__getitem__
    incoming = [
        fake_batch(["a1", "b1", "a2", "b2"]),
        fake_batch(["a1", "a1", "b1", "a3"]),
        fake_batch(["b2", "lonely", "a2"]),
    ]
    out = [(g, batch.keys, batch.y.flatten().tolist()) for g, batch in batches_by_group(incoming, group)]
    # group 0 fills at the second batch (5 rows) and takes its leftover "a2" at the end; "lonely" cannot pair
    assert out == [
        (0, ["a1", "a2", "a1", "a1", "a3", "a2"], [0, 2, 0, 1, 3, 2]),
        (1, ["b1", "b2", "b1", "b2"], [1, 3, 2, 0]),
    ]


@pytest.fixture(scope="module")
def loader_spec(train_shards: Path) -> LoaderSpec:
    """The synthetic training shards (13 videos, 4 s) read as held-out data, 2 clips per video."""
    return LoaderSpec(
        expand_shards(str(train_shards / "shards")), 8, 25, 400, seed=1, workers=0, training=False, clips_per_video=2
    )


@pytest.fixture(scope="module")
def settings(train_shards: Path) -> InputSettings:
    stats = FeatureStats.load(train_shards / "manifests" / "stats.json")
    return InputSettings(48, (1.0,), AudioNormalizer(stats.mean, stats.std, CPU), PairSampler(100, 50, 50))


def test_pairs_are_made_within_a_half(loader_spec: LoaderSpec, settings: InputSettings) -> None:
    scores = score_pairs(EventDetector(), build_loader(loader_spec, 0), settings, CPU, 0, half_of, HALVES)
    first, second = scores.videos
    assert first and second and not first & second
    assert all(half_of(key) == 0 for key in first) and all(half_of(key) == 1 for key in second)
    assert sum(scores.clips) == 2 * (len(first) + len(second))
    for mix, halves in scores.pairs.items():
        for half, clips in zip(halves, scores.clips, strict=True):
            assert half.count == clips  # every clip paired once per mix
            assert half.kinds()["positive"] >= half.count // 2 - 1
        if mix == "mixed":
            assert sum(half.kinds().get("hard", 0) for half in halves) > 0


def test_evaluate_scores_a_working_model_high_and_repeats(
    loader_spec: LoaderSpec, settings: InputSettings, keys: dict[str, list[str]]
) -> None:
    first = evaluate(EventDetector(), build_loader(loader_spec, 0), settings, CPU)
    again = evaluate(EventDetector(), build_loader(loader_spec, 0), settings, CPU)
    assert first == again
    assert first["val_acc_easy"] is not None and first["val_acc_easy"] >= 0.9
    assert first["val_acc_mixed"] is not None and first["val_acc_mixed"] >= 0.9
    for mix in ("easy", "mixed"):
        assert isinstance(first[f"val_tau_{mix}_a"], float) and isinstance(first[f"val_tau_{mix}_b"], float)
        assert 2 * len(keys["train"]) - 4 <= first[f"val_pairs_{mix}"] <= 2 * len(keys["train"])
    assert "val_acc_easy_head" not in first


def test_a_half_with_one_video_cannot_be_scored(
    loader_spec: LoaderSpec, settings: InputSettings, keys: dict[str, list[str]]
) -> None:
    """Easy negatives need another video of the same half: a half of one video gives no pairs, and no figure."""
    scores = score_pairs(
        EventDetector(),
        build_loader(loader_spec, 0),
        settings,
        CPU,
        0,
        lambda key: 0 if key == keys["train"][0] else 1,
        2,
    )
    assert len(scores.videos[0]) == 1 and scores.clips[0] == 2
    for halves in scores.pairs.values():
        assert halves[0].count == 0 and halves[1].count == scores.clips[1]
        assert cross_half(halves) is None


@pytest.fixture(scope="module")
def keys(train_shards: Path) -> dict[str, list[str]]:
    """The ingested keys of each split of the fixture's shards."""
    videos = pd.read_parquet(train_shards / "manifests" / "videos.parquet")
    videos = videos[videos.status == "ok"]
    return {split: sorted(videos[videos.split == split].key) for split in ("train", "val")}


@pytest.fixture(scope="module")
def checkpoint(train_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("eval_ckpt"), stats=train_shards / "manifests" / "stats.json")


def run_eval(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "eval.json"
    status = main([*args, "--out", str(out), "--workers", "1", "--clips-per-video", "2", "--batch-size", "8"])
    return status, json.loads(out.read_text()) if status == 0 else {}


def test_cli_halves_contract_and_repeatability(
    train_shards: Path, checkpoint: Path, keys: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--checkpoint", str(checkpoint), "--shards", str(train_shards / "shards"), "--split", "train")
    status, results = run_eval(tmp_path, *args)
    assert status == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if "│ d < τ" in line]
    assert len(rows) == 6 and sum("75/25" in row for row in rows) == 3  # two transfers and their mean, per mix
    in_b = sum(half_of(key) for key in keys["train"])
    in_a = len(keys["train"]) - in_b
    assert in_a >= 2 and in_b >= 2  # the fixture can be scored both ways
    assert results["videos"] == {"A": in_a, "B": in_b} and results["clips"] == {"A": 2 * in_a, "B": 2 * in_b}
    assert results["model_spec"]["width"] == 4 and "two halves" in results["protocol"]
    for name, mix in results["mixes"].items():
        transfers = mix["threshold"]["transfers"]
        assert [(t["tau_chosen_on"], t["scored_on"]) for t in transfers] == [("A", "B"), ("B", "A")]
        assert [t["scored_pairs"] for t in transfers] == [2 * in_b, 2 * in_a]
        assert mix["threshold"]["accuracy"] == pytest.approx(np.mean([t["accuracy"] for t in transfers]))
        assert all(0 <= t["accuracy"] <= 1 and 0 <= t["fit_accuracy"] <= 1 for t in transfers)
        assert mix["pairs"] == {"A": 2 * in_a, "B": 2 * in_b} and mix["head"] is None
        assert (name == "mixed") == any("hard" in kinds for kinds in mix["kinds"].values())
    assert run_eval(tmp_path, *args)[1] == results  # fixed seeds: the same numbers


def test_cli_tau_from_other_shards(
    train_shards: Path, checkpoint: Path, keys: dict[str, list[str]], tmp_path: Path
) -> None:
    train = ",".join(expand_shards(str(train_shards / "shards")))
    status, results = run_eval(
        tmp_path, "--checkpoint", str(checkpoint), "--shards", train, "--tau-shards", str(train_shards / "shards")
    )  # --split val: the 3 val videos
    assert status == 0
    assert results["videos"] == {"tau": len(keys["val"]), "test": len(keys["train"])}
    for mix in results["mixes"].values():
        (transfer,) = mix["threshold"]["transfers"]
        assert (transfer["tau_chosen_on"], transfer["scored_on"]) == ("tau", "test")
        assert transfer["scored_pairs"] == 2 * len(keys["train"])
        assert mix["threshold"]["accuracy"] == transfer["accuracy"]


def test_cli_refuses_tau_shards_that_share_videos(
    train_shards: Path, checkpoint: Path, keys: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = str(train_shards / "shards")
    status, _ = run_eval(tmp_path, "--checkpoint", str(checkpoint), "--shards", shards, "--tau-shards", shards)
    assert status == 1 and f"share {len(keys['val'])} video(s)" in said(capsys.readouterr().err)


def test_cli_reports_the_sync_head(train_shards: Path, keys: dict[str, list[str]], tmp_path: Path) -> None:
    with_head = tiny_checkpoint(tmp_path / "head", sync_head=True)
    status, results = run_eval(
        tmp_path, "--checkpoint", str(with_head), "--shards", str(train_shards / "shards"), "--split", "train"
    )
    assert status == 0
    for mix in results["mixes"].values():
        assert 0 <= mix["head"]["accuracy"] <= 1 and mix["head"]["pairs"] == 2 * len(keys["train"])


def shard_without_features(path: Path) -> Path:
    """A tar whose samples have metadata only (no .mp4, no .fbank.npy)."""
    with tarfile.open(path, "w") as tar:
        for index in range(4):
            data = json.dumps({"key": f"k{index}"}).encode()
            info = tarfile.TarInfo(f"k{index}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_cli_bad_input(
    train_shards: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = str(train_shards / "shards")
    assert run_eval(tmp_path, "--checkpoint", str(tmp_path / "none.pt"), "--shards", shards)[0] == 1
    assert "no checkpoint at" in said(capsys.readouterr().err)
    other = tiny_checkpoint(tmp_path / "other", declared_width=8)
    assert run_eval(tmp_path, "--checkpoint", str(other), "--shards", shards)[0] == 1
    assert "its weights do not fit its declared architecture" in said(capsys.readouterr().err)
    empty = shard_without_features(tmp_path / "0000.tar")
    assert run_eval(tmp_path, "--checkpoint", str(checkpoint), "--shards", str(empty))[0] == 1
    assert "no usable samples" in said(capsys.readouterr().err)
    assert run_eval(tmp_path, "--checkpoint", str(checkpoint), "--shards", str(tmp_path / "{0..3}.tar"))[0] == 1
    assert "do not exist" in said(capsys.readouterr().err)


def test_cli_says_which_half_cannot_be_paired(
    train_shards: Path, checkpoint: Path, keys: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fixture's few validation videos: a half with fewer than two videos is named, and nothing is reported."""
    in_b = sum(half_of(key) for key in keys["val"])
    counts = {"A": len(keys["val"]) - in_b, "B": in_b}
    status, _ = run_eval(tmp_path, "--checkpoint", str(checkpoint), "--shards", str(train_shards / "shards"))
    short = [name for name, count in counts.items() if count < 2]
    if short:
        assert status == 1
        assert f"half {short[0]} has {counts[short[0]]} usable video(s)" in said(capsys.readouterr().err)
    else:
        assert status == 0
