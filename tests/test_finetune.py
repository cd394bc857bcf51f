"""avts-finetune on CPU: avts-synth class folders → avts-ingest --split-file → avts-train → avts-finetune.

Covers the contract (labels from folders, split files deciding train and test, the class list, clip vs
video-level scoring by averaging), the three modalities' heads, AVTS vs scratch initialization, bad input
(a missing checkpoint, one of another architecture, a classifier checkpoint, a file that is no checkpoint,
shards without labels) and DDP under torchrun. About 2.5 minutes on a 2-core box (most of it the data, the
pretraining run and the torchrun run).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console

from pipeline.config import IngestConfig
from pipeline.discover import find_files
from pipeline.ingest import run_ingest
from pipeline.synth import SynthConfig, generate
from tests.conftest import torchrun_command
from tests.test_train import audit, records, run
from trainer import distributed
from trainer.cli import main as train_main
from trainer.finetune import build_finetune_run
from trainer.finetune_cli import main as finetune_main
from trainer.finetune_cli import parse_args
from trainer.finetune_eval import ClipScores, score_videos

TINY = [
    "--device",
    "cpu",
    "--batch-size",
    "3",
    "--crop-size",
    "32",
    "--test-clips",
    "3",
    "--workers",
    "1",
    "--log-every",
    "1",
    "--shuffle-buffer",
    "20",
]
CLASSES = ["class_00", "class_01", "class_02"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 videos in 3 class folders; per class 3 listed for training, 2 for test, 1 in no list; ingested and
    used to pretrain a tiny AVTS model (``<root>/pretrain/checkpoints/last.pt``)."""
    root = tmp_path_factory.mktemp("finetune")
    videos = root / "videos"
    generate(SynthConfig(out=videos, videos=18, duration=3.0, size=32, seed=11, workers=2, classes=3))
    files = [path.relative_to(videos).as_posix() for path in find_files(videos).files]
    train = [f for label in CLASSES for f in sorted(x for x in files if x.startswith(label))[:3]]
    test = [f for label in CLASSES for f in sorted(x for x in files if x.startswith(label))[3:5]]
    (root / "trainlist01.txt").write_text("".join(f"{f.replace('.mp4', '.avi')} 1\n" for f in train))
    (root / "testlist01.txt").write_text("".join(f"{f}\n" for f in test))
    run_ingest(
        IngestConfig(
            src=videos,
            out=root / "shards",
            shard_size=3,
            short_side=32,
            workers=2,
            engine="processes",
            plain=True,
            split_file=(root / "trainlist01.txt", root / "testlist01.txt"),
        )
    )
    assert (
        train_main(
            [
                "--shards",
                str(root / "shards"),
                "--out",
                str(root / "pretrain"),
                "--device",
                "cpu",
                "--epochs",
                "1",
                "--batch-size",
                "3",
                "--width",
                "4",
                "--audio-width",
                "4",
                "--embed-dim",
                "16",
                "--crop-size",
                "32",
                "--workers",
                "1",
                "--audio-context",
                "3",
            ]
        )
        == 0
    )
    return root


def finetune(data: Path, out: Path, *extra: str) -> int:
    return finetune_main(["--shards", str(data / "shards"), "--out", str(out), *TINY, *extra])


def test_video_scores_are_the_mean_of_their_clip_scores() -> None:
    # video a (class 1): two clips lean to class 0, one is sure of class 1; the mean says class 1
    # video b (class 0): both clips right; video c (class 1): one clip, wrong
    probabilities = torch.tensor([[0.55, 0.45], [0.6, 0.4], [0.05, 0.95], [0.9, 0.1], [0.7, 0.3], [0.8, 0.2]])
    keys = ["a", "a", "a", "b", "b", "c"]
    targets = torch.tensor([1, 1, 1, 0, 0, 1])
    result = score_videos(ClipScores(probabilities, keys, targets), ["zero", "one"])
    assert (result.clips, result.videos) == (6, 3)
    assert result.clip_top1 == pytest.approx(3 / 6)  # a's third clip and both of b's
    assert result.video_top1 == pytest.approx(2 / 3)  # a (mean 0.4, 0.6) and b
    assert result.per_class == {"zero": 1.0, "one": 0.5}
    assert result.videos_per_class == {"zero": 1, "one": 2}
    assert result.confusion.tolist() == [[1, 0], [1, 1]]
    assert result.mean_class_accuracy == pytest.approx(0.75)
    with pytest.raises(ValueError, match="video a carry different labels"):
        score_videos(ClipScores(probabilities, keys, torch.tensor([1, 0, 1, 0, 0, 1])), ["zero", "one"])


def test_init_starts_from_the_avts_subnets_and_scratch_does_not(data: Path, tmp_path: Path) -> None:
    runtime = distributed.Runtime(0, 0, 1, torch.device("cpu"))
    checkpoint = data / "pretrain" / "checkpoints" / "last.pt"
    pretrained = torch.load(checkpoint, weights_only=False)
    base = ["--shards", str(data / "shards"), *TINY, "--modality", "audiovisual"]
    from_avts = build_finetune_run(
        parse_args([*base, "--out", str(tmp_path / "a"), "--init", str(checkpoint)]),
        runtime,
        Console(file=io.StringIO()),
    )
    weights = from_avts.model.state_dict()
    backbone = [name for name in weights if not name.startswith("head.")]
    assert len(backbone) > 50
    assert all(torch.equal(weights[name], pretrained["model"][name]) for name in backbone)
    assert not any(name.startswith(("video.fc.", "audio.fc7.")) for name in weights)  # embedding layers dropped
    assert from_avts.task.stats.mean == pretrained["stats"]["mean"]
    scratch = build_finetune_run(
        parse_args([*base, "--out", str(tmp_path / "s"), "--init", "scratch", "--width", "4", "--audio-width", "4"]),
        runtime,
        Console(file=io.StringIO()),
    )
    fresh = scratch.model.state_dict()
    assert [tuple(fresh[n].shape) for n in backbone] == [tuple(weights[n].shape) for n in backbone]
    assert not torch.equal(fresh["video.conv1.0.weight"], weights["video.conv1.0.weight"])
    assert torch.equal(fresh["head.1.weight"], weights["head.1.weight"])  # the same seed gives the same new head
    assert scratch.task.classes == CLASSES


def test_finetune_from_avts_and_from_scratch_end_to_end(data: Path, tmp_path: Path) -> None:
    checkpoint = data / "pretrain" / "checkpoints" / "last.pt"
    for name, init in (("avts", str(checkpoint)), ("scratch", "scratch")):
        out = tmp_path / name
        extra = ("--width", "4") if init == "scratch" else ()
        assert finetune(data, out, "--init", init, "--epochs", "2", *extra) == 0
        epochs = records(out, "epoch")
        assert [e["epoch"] for e in epochs] == [0, 1]
        assert [e["step"] for e in epochs] == [3, 6]  # 9 training videos, batches of 3
        assert all(e["modality"] == "video" and e["init"] == init and e["train_loss"] > 0 for e in epochs)
        steps = records(out, "step")
        assert [s["step"] for s in steps] == list(range(1, 7)) and all(0 <= s["train_top1"] <= 1 for s in steps)
        results = json.loads((out / "results.json").read_text())
        assert (results["videos"], results["clips"], results["clips_per_video"]) == (6, 18, 3)
        assert results["classes"] == CLASSES and results["videos_per_class"] == dict.fromkeys(CLASSES, 2)
        assert results["clip_top1"] == epochs[-1]["test_clip_top1"]  # the last epoch's test is the final one
        assert results["video_top1"] == epochs[-1]["test_video_top1"]
        assert sum(map(sum, results["confusion"])) == 6
        for png in ("loss.png", "accuracy.png", "lr.png", "confusion.png"):
            assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001.pt", "epoch-0002.pt", "last.pt"]
        saved = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
        assert saved["classes"] == CLASSES and saved["classifier_spec"]["modality"] == "video"
        assert saved["model"]["head.1.weight"].shape == (3, 8 * 4)  # pooled conv5 (8 × width 4) → FC C
    # resuming a finished run tests again and changes nothing; a changed class list is refused
    assert finetune(data, tmp_path / "avts", "--init", str(checkpoint), "--epochs", "2", "--resume") == 0
    assert len(records(tmp_path / "avts", "epoch")) == 2
    (tmp_path / "avts" / "classes.txt").write_text("class_00\nclass_01\n")
    assert finetune(data, tmp_path / "avts", "--init", str(checkpoint), "--epochs", "3", "--resume") == 1


def test_audio_and_audiovisual_heads(data: Path, tmp_path: Path) -> None:
    checkpoint = str(data / "pretrain" / "checkpoints" / "last.pt")
    assert finetune(data, tmp_path / "av", "--init", checkpoint, "--modality", "audiovisual", "--epochs", "1") == 0
    head = {
        k: v.shape
        for k, v in torch.load(tmp_path / "av" / "checkpoints" / "last.pt", weights_only=False)["model"].items()
        if k.startswith("head.")
    }
    assert head == {
        "head.1.weight": (512, 8 * 4 + 512),
        "head.1.bias": (512,),  # concat → FC 512 (§3.5)
        "head.3.weight": (3, 512),
        "head.3.bias": (3,),
    }  # → FC C
    assert finetune(data, tmp_path / "a", "--init", checkpoint, "--modality", "audio", "--epochs", "1") == 0
    saved = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert saved["head.1.weight"].shape == (3, 512) and not any(k.startswith("video.") for k in saved)


def test_bad_checkpoints_are_clear_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = data / "pretrain" / "checkpoints" / "last.pt"
    with pytest.raises(SystemExit):
        finetune(data, tmp_path / "missing", "--init", str(tmp_path / "nowhere.pt"))
    assert "no checkpoint file at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune(data, tmp_path / "stats", "--init", str(checkpoint), "--stats", str(data / "manifests" / "stats.json"))
    assert "--stats is for --init scratch" in capsys.readouterr().err

    assert finetune(data, tmp_path / "arch", "--init", str(checkpoint), "--width", "8", "--arch", "mc3") == 1
    message = " ".join(capsys.readouterr().err.split())
    assert "another architecture" in message and "--width 8 (the checkpoint's: 4)" in message
    assert "--arch" not in message  # mc3 is what the checkpoint holds

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert finetune(data, tmp_path / "garbage", "--init", str(garbage)) == 1
    assert "is not a readable checkpoint" in capsys.readouterr().err

    assert finetune(data, tmp_path / "ft", "--init", str(checkpoint), "--epochs", "1") == 0
    capsys.readouterr()
    assert finetune(data, tmp_path / "again", "--init", str(tmp_path / "ft" / "checkpoints" / "last.pt")) == 1
    assert "is an avts-finetune checkpoint" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "again" / "checkpoints").exists()

    # --resume in another tool's run folder: said in one line, not as a list of every setting that differs
    pretrain_config = (data / "pretrain" / "config.json").read_text()
    assert finetune(data, data / "pretrain", "--init", "scratch", "--resume") == 1
    message = " ".join(capsys.readouterr().err.split())
    assert f"{data / 'pretrain'} holds an avts-train run, which this command cannot continue" in message
    assert f"--init {checkpoint}" in message and "differ" not in message
    assert (data / "pretrain" / "config.json").read_text() == pretrain_config
    shards = ["--shards", str(data / "shards"), "--device", "cpu", "--resume"]
    assert train_main([*shards, "--out", str(tmp_path / "ft")]) == 1
    message = " ".join(capsys.readouterr().err.split())
    assert "holds an avts-finetune run, which this command cannot continue" in message and "--init" not in message


def test_shards_without_labels_are_refused(
    train_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # conftest's shards come from a flat folder: no class folders, no labels
    shards = train_shards / "shards"
    common = ["--init", "scratch", "--width", "4", "--test-shards", ",".join(map(str, shards.glob("val-*.tar")))]
    assert finetune_main(["--shards", str(shards), "--out", str(tmp_path / "a"), *TINY, *common]) == 1
    assert "have no label" in " ".join(capsys.readouterr().err.split())
    # without the manifest (a copied shard folder and a class list), the samples themselves are checked
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    (tmp_path / "classes.txt").write_text("cats\ndogs\n")
    assert (
        finetune_main(
            [
                "--shards",
                str(copy),
                "--out",
                str(tmp_path / "b"),
                *TINY,
                *common,
                "--classes",
                str(tmp_path / "classes.txt"),
                "--stats",
                str(train_shards / "manifests" / "stats.json"),
            ]
        )
        == 1
    )
    assert "labels that are not among the 2 classes: None" in " ".join(capsys.readouterr().err.split())


def test_torchrun_two_ranks_split_samples_and_agree_on_weights(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = torchrun_command(
        "trainer.finetune_cli",
        "--shards",
        str(data / "shards"),
        "--out",
        str(out),
        *TINY,
        "--init",
        str(data / "pretrain" / "checkpoints" / "last.pt"),
        "--epochs",
        "2",
        "--audit",
        "--modality",
        "audiovisual",
    )
    result = run(command, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = audit(out, 0), audit(out, 1)
    assert len(rank0) == len(rank1) == 2
    for first, second in zip(rank0, rank1, strict=True):
        assert first["steps"] == second["steps"] > 0
        assert not set(first["keys"]) & set(second["keys"])
        assert first["weights_sum"] == pytest.approx(second["weights_sum"], rel=1e-12)
    assert json.loads((out / "results.json").read_text())["videos"] == 6
    assert "2 process(es)" in result.stderr
