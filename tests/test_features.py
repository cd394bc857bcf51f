"""avts-features: audio (§3.4) and video feature rows of a tiny checkpoint, placement, exactness, bad input, errors.

Everything is made here: a width-4 AVTS checkpoint, a camera-like clip with sound, a silent video, a video with
less sound than picture, a 0.6-s video, a .wav and an .ogg tone, a 1-s .wav (padded), a broken file, a hidden file
and an ESC-50-style CSV. About 6 s on the 2-core CPU box.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from avts.stats import FeatureStats
from pipeline.config import EncodeSettings
from pipeline.discover import VideoItem
from pipeline.transcode import transcode
from tests.conftest import make_av_clip
from tests.test_probe import tone, write_audio, write_video
from trainer.augment import video_input
from trainer.checkpoint import load_trained, save_checkpoint
from trainer.clip_decode import decode_clip
from trainer.data import square_crop
from trainer.downstream.audio_input import decode_mono_16k, subclip_filterbanks, subclip_starts
from trainer.downstream.features import FeaturesConfig, read_features
from trainer.downstream.features_cli import main
from trainer.downstream.subclip_features import AudioConv5Extractor
from trainer.models import ModelSpec, build_avts

SPEC = ModelSpec(arch="mc3", width=4, audio_width=4, embed_dim=8)
STATS = FeatureStats(mean=[-4.0] * 40, std=[3.0] * 40, frames=100, videos=1, fraction=1.0, seed=0)
CROP, SHORT_SIDE = 48, 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An avts-train-style checkpoint of a width-4 model (crop 48) with its audio stats."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    weights = build_avts(SPEC).state_dict()
    for name, tensor in weights.items():  # BatchNorm statistics other than (0, 1), so that eval mode matters
        if name.endswith("running_mean"):
            tensor.uniform_(-0.1, 0.1)
        elif name.endswith("running_var"):
            tensor.uniform_(0.5, 2.0)
    return save_checkpoint(
        folder,
        {"model_spec": SPEC.to_dict(), "stats": STATS.to_dict(), "model": weights, "config": {"crop_size": CROP}},
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dog/clip.mp4 (3 s, sound), dog/silent.mp4 (2 s, no audio), dog/brief_sound.mp4 (1.6 s of video, 0.5 s of
    sound), dog/blink.mp4 (0.6 s, no audio), rain/tone.wav and rain/tone.ogg (3 s), short.wav (1 s, directly in
    the folder: no label), broken.mp4 (junk), .hidden.wav, pipe.wav (a named pipe: opening it waited for ever)
    and zero.mp4 (a symlink to /dev/zero)."""
    root = tmp_path_factory.mktemp("media")
    make_av_clip(root / "dog" / "clip.mp4", 3.0, width=160, height=96, seed=1)
    write_video(root / "dog" / "silent.mp4", None, seconds=2.0)
    write_video(root / "dog" / "brief_sound.mp4", tone(700, 0.5, seed=5, rate=16_000), seconds=1.6)
    write_video(root / "dog" / "blink.mp4", None, seconds=0.6)
    (root / "rain").mkdir()
    write_audio(root / "rain" / "tone.wav", tone(500, 3.0, seed=1))
    write_audio(root / "rain" / "tone.ogg", tone(900, 3.0, seed=2))
    write_audio(root / "short.wav", tone(300, 1.0, seed=3))
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 200)
    write_audio(root / ".hidden.wav", tone(300, 3.0, seed=4))
    os.mkfifo(root / "pipe.wav")
    os.symlink("/dev/zero", root / "zero.mp4")
    return root


@pytest.fixture(scope="module")
def audio_run(media: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`avts-features` on the folder, audio, 3 sub-clips, batches of 4; returns the parquet."""
    out = tmp_path_factory.mktemp("audio_out") / "audio.parquet"
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--src",
                str(media),
                "--out",
                str(out),
                "--subclips",
                "3",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "--plain",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def video_run(media: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`avts-features` on the folder, video, 4 clips at short side 64, batches of 4; returns the parquet."""
    out = tmp_path_factory.mktemp("video_out") / "video.parquet"
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--src",
                str(media),
                "--out",
                str(out),
                "--modality",
                "video",
                "--clips",
                "4",
                "--short-side",
                str(SHORT_SIDE),
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "--plain",
            ]
        )
        == 0
    )
    return out


def skipped_reasons(parquet: Path) -> dict[str, str]:
    """``{name: reason}`` of ``<stem>.skipped.json``."""
    listed = json.loads(parquet.with_name(f"{parquet.stem}.skipped.json").read_text())["skipped"]
    return {item["path"]: item["reason"] for item in listed}


# ---- audio -------------------------------------------------------------------------------------------------------
def test_audio_rows_shapes_labels_and_padding(audio_run: Path) -> None:
    rows, features, info = read_features(audio_run)
    dim = build_avts(SPEC).audio.conv5_shape[0] * 4 * 1  # 16 conv5 channels at width 4 × 4 bands × 1 time bin
    assert features.shape == (5 * 3, dim) == (15, 64) and features.dtype == np.float32
    names = ["dog/brief_sound.mp4", "dog/clip.mp4", "rain/tone.ogg", "rain/tone.wav", "short.wav"]
    assert rows["path"].tolist() == [name for name in names for _ in range(3)]
    assert rows["clip"].tolist() == [0, 1, 2] * 5
    assert rows["label"].tolist()[:12:3] == ["dog", "dog", "rain", "rain"]
    assert rows["label"].isna().tolist() == [False] * 12 + [True] * 3 and rows["fold"].isna().all()
    assert rows["padded"].tolist() == [True] * 3 + [False] * 9 + [True] * 3
    assert rows.loc[rows["path"] == "short.wav", "start_s"].tolist() == [0.0, 0.0, 0.0]  # padded to one window
    assert info["modality"] == "audio" and info["pool"] == [4, 1] and info["subclips"] == 3
    assert info["feature_dim"] == dim and info["model_spec"] == SPEC.to_dict()
    assert (features >= 0).all() and np.isfinite(features).all()


def test_audio_rows_are_the_probe_path_on_the_checkpoint_subnet_and_stats(
    audio_run: Path, media: Path, checkpoint: Path
) -> None:
    rows, features, _ = read_features(audio_run)
    signal = decode_mono_16k(media / "rain" / "tone.wav")
    mine = (rows["path"] == "rain/tone.wav").to_numpy()
    # 3 s at 22.05 kHz → 48,000 samples at 16 kHz → 299 feature frames; sub-clips at frames 0, 50 and 99
    assert rows.loc[mine, "start_s"].tolist() == (subclip_starts(len(signal), 3) / 16_000).tolist() == [0.0, 0.5, 0.99]
    trained = load_trained(checkpoint)
    windows, padded = subclip_filterbanks(signal, 3)
    by_hand = AudioConv5Extractor(trained.model.audio, STATS.mean, STATS.std, (4, 1))(windows)
    np.testing.assert_array_equal(features[mine], by_hand)
    assert not padded and not np.allclose(features[mine][0], features[mine][2])


def test_bad_and_hidden_files_are_listed_with_their_reason(audio_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reasons = skipped_reasons(audio_run)
    assert reasons.keys() == {"dog/silent.mp4", "dog/blink.mp4", "broken.mp4", ".hidden.wav", "pipe.wav", "zero.mp4"}
    assert reasons["dog/silent.mp4"] == reasons["dog/blink.mp4"] == "no audio stream"
    assert reasons["pipe.wav"] == "not a regular file: a named pipe; only files are read"
    assert reasons["zero.mp4"] == "not a regular file: a character device; only files are read"
    assert reasons[".hidden.wav"] == "hidden file" and reasons["broken.mp4"].startswith("cannot decode")
    padded = json.loads(audio_run.with_name("audio.skipped.json").read_text())["padded"]
    assert padded == ["dog/brief_sound.mp4", "short.wav"]


# ---- video -------------------------------------------------------------------------------------------------------
def test_video_clips_are_evenly_spaced_and_files_without_enough_audio_work(video_run: Path) -> None:
    rows, features, info = read_features(video_run)
    assert features.shape == (3 * 4, 8 * SPEC.width) == (12, 32)
    assert rows["path"].tolist() == ["dog/brief_sound.mp4"] * 4 + ["dog/clip.mp4"] * 4 + ["dog/silent.mp4"] * 4
    # clip_starts: round((j + 0.5) / 4 × (frames − 25)): 40 frames → 2, 6, 9, 13; 75 → 6, 19, 31, 44; 50 → 3, 9, 16, 22
    assert rows["start_s"].tolist() == [0.08, 0.24, 0.36, 0.52, 0.24, 0.76, 1.24, 1.76, 0.12, 0.36, 0.64, 0.88]
    assert rows["clip"].tolist() == [0, 1, 2, 3] * 3 and not rows["padded"].any()
    assert info["modality"] == "video" and info["crop_size"] == CROP and info["short_side"] == SHORT_SIDE
    assert info["min_duration_s"] == 1.0 and info["pool"] == [1, 1, 1]
    reasons = skipped_reasons(video_run)
    assert reasons["rain/tone.wav"] == reasons["short.wav"] == "no video stream: audio only"
    assert reasons["dog/blink.mp4"] == "too short: 0.60 s < 1 s"
    assert reasons.keys() == {
        "rain/tone.wav",
        "rain/tone.ogg",
        "short.wav",
        "dog/blink.mp4",
        "broken.mp4",
        ".hidden.wav",
        "pipe.wav",
        "zero.mp4",
    }
    assert reasons["pipe.wav"] == "not a regular file: a named pipe; only files are read"


def test_video_features_equal_the_model_run_by_hand(video_run: Path, media: Path, checkpoint: Path) -> None:
    _, features, _ = read_features(video_run)
    settings = EncodeSettings(
        short_side=SHORT_SIDE,
        crf=23,
        preset="veryfast",
        mp3=False,
        mp3_bitrate=64_000,
        min_duration=1.0,
        threads=1,
        keep_without_audio=True,
    )
    path = media / "dog" / "clip.mp4"
    sample = transcode(VideoItem("clip", path, "clip.mp4", None, "test", None), settings).sample
    assert sample.meta.frames == 75 and min(sample.meta.stored_width, sample.meta.stored_height) == SHORT_SIDE
    # the run's second batch of 4: the clips of clip.mp4 at frames 6, 19, 31, 44 (same batch, same arithmetic)
    crops = [square_crop(decode_clip(sample.video, start, 25), None) for start in (6, 19, 31, 44)]
    y, u, v = (torch.from_numpy(np.stack([crop[plane] for crop in crops])) for plane in range(3))
    model = load_trained(checkpoint).model
    with torch.no_grad():
        by_hand = model.video.forward_features(video_input(y, u, v, CROP, (1.0,), train=False))
    assert by_hand.shape == (4, 32)
    np.testing.assert_array_equal(features[4:8], by_hand.numpy())
    assert not np.allclose(features[4], features[5])


# ---- CSV layout and the parquet file -------------------------------------------------------------------------------
def test_csv_layout_keeps_names_labels_and_folds(media: Path, checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").symlink_to(media / "rain")
    meta = tmp_path / "meta" / "set.csv"
    meta.write_text("filename,fold,target,category\ntone.wav,1,0,rain\ntone.ogg,2,0,rain\ngone.wav,2,1,wind\n")
    out = tmp_path / "esc.parquet"
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--src",
                str(meta),
                "--out",
                str(out),
                "--subclips",
                "2",
                "--device",
                "cpu",
                "--plain",
            ]
        )
        == 0
    )
    table = pd.read_parquet(out)
    assert table.columns.tolist() == ["path", "label", "fold", "clip", "start_s", "padded", "feature"]
    assert table["path"].tolist() == ["tone.wav", "tone.wav", "tone.ogg", "tone.ogg"]
    assert table["fold"].tolist() == ["1", "1", "2", "2"] and set(table["label"]) == {"rain"}
    assert skipped_reasons(out) == {"gone.wav": "file not found"}
    schema = pq.read_schema(out)
    kind = schema.field("feature").type
    assert pa.types.is_list(kind) and kind.value_type == pa.float32()
    rows, features, info = read_features(out)
    np.testing.assert_array_equal(features, np.stack(table["feature"].to_list()))
    ogg = subclip_starts(len(decode_mono_16k(media / "rain" / "tone.ogg")), 2) / 16_000  # Vorbis: a bit longer
    assert rows["start_s"].tolist() == [0.0, 0.99, *ogg.tolist()] and info["source"] == str(meta)


def test_nothing_usable_is_exit_1_with_the_reasons_and_no_parquet(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("not media\n" * 20)
    out = tmp_path / "out" / "f.parquet"
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--src",
                str(tmp_path / "src"),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--plain",
            ]
        )
        == 1
    )
    assert not out.exists() and list(skipped_reasons(out)) == ["notes.txt"]
    err = capsys.readouterr().err
    assert "skipped notes.txt" in err and "avts-features: no file gave features (1 skipped" in err


# ---- errors --------------------------------------------------------------------------------------------------------
def test_missing_and_foreign_checkpoints_are_one_line_errors(
    media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_checkpoint(tmp_path / "finetune", {"model": {}, "state": {"epoch": 1}, "classes": ["a", "b"]})
    cases = [
        (tmp_path / "missing.pt", media, "no checkpoint at"),
        (tmp_path / "finetune" / "last.pt", media, "is not an avts-train checkpoint (an avts-finetune one?)"),
    ]
    for checkpoint, src, message in cases:
        assert main(["--checkpoint", str(checkpoint), "--src", str(src), "--out", str(tmp_path / "x.parquet")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("avts-features: ") and message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()


def test_bad_sources_and_flags(
    media: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.parquet"), "--device", "cpu"]
    assert main([*base, "--src", str(tmp_path / "nowhere")]) == 1
    assert "--src " in capsys.readouterr().err
    assert main([*base, "--src", str(media / "short.wav")]) == 1
    assert "neither a folder nor a .csv file" in capsys.readouterr().err
    assert main([*base, "--src", str(media), "--audio-dir", str(media)]) == 1
    assert "--audio-dir only applies to a CSV --src" in capsys.readouterr().err
    for flags, message in (
        (["--modality", "smell"], "invalid choice: 'smell'"),
        (["--pool", "4by1"], "BANDSxTIME"),
        (["--subclips", "0"], "--subclips must be ≥ 1"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main([*base, "--src", str(media), *flags])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ValueError, match="--modality must be one of audio, video"):
        FeaturesConfig(checkpoint=checkpoint, src=media, out=tmp_path / "x.parquet", modality="smell")
