"""`avts-sync`: the offset search, its sign convention and its contract (about 60 s on the 2-core CI box).

The search is checked with hand-made models whose answer is known: embeddings that match exactly at one shift,
and a "detector" that embeds the picture's brightness and the sound's loudness over the 25 frames of a window,
which finds the true offset of `avts-synth --audio-offset` files through the whole path (ingest preprocessing,
alignment, clip decoding, centre crop, shifted audio windows). The CLI runs on a tiny untrained checkpoint for
its contract only (JSON, PNG, exit status, bad input), not for accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.synth import SynthConfig, generate, read_audio_offset
from tests.test_avts_eval import EventDetector, said, tiny_checkpoint
from trainer.augment import AudioNormalizer
from trainer.downstream.sync import (
    SyncConfig,
    SyncError,
    distance_curves,
    find_offset,
    sync_file,
    usable_range,
    window_starts,
)
from trainer.downstream.sync_cli import main
from trainer.sampler import PairSampler
from trainer.step import InputSettings

CPU = torch.device("cpu")
SETTINGS = InputSettings(48, (1.0,), AudioNormalizer([0.0] * 40, [1.0] * 40, CPU), PairSampler())
OFFSETS = (-0.2, 0.0, 0.28)


@pytest.fixture(scope="module")
def shifted_videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One 5-s synthetic video per known offset (same scene)."""
    root = tmp_path_factory.mktemp("shifted")
    return [
        generate(
            SynthConfig(
                out=root / f"offset{offset}", videos=1, duration=5.0, size=64, seed=5, audio_offset=offset, workers=1
            )
        )[0]
        for offset in OFFSETS
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def config(**overrides: object) -> SyncConfig:
    values: dict = {"checkpoint": Path("unused"), "short_side": 64, "range": 0.6, "hop": 0.2, **overrides}
    return SyncConfig(**values)


def test_exact_match_is_found_at_every_shift() -> None:
    """Audio embedding i is random; the clip embedding equals the audio embedding ``true`` frames after it."""
    generator = torch.Generator().manual_seed(0)
    positions = np.arange(0, 400)
    audio = torch.randn(len(positions), 8, generator=generator)
    clip_features = np.array([40, 80, 120, 160])
    shifts = np.arange(-40, 41, 2)
    for true in (-40, -6, 0, 14, 40):
        video = audio[clip_features + true]
        curves = distance_curves(video, audio, positions, clip_features, shifts).numpy()
        assert curves.shape == (4, len(shifts))
        estimate = find_offset(curves, shifts)
        assert shifts[estimate.best] == true
        assert estimate.curve[estimate.best] == pytest.approx(0.0, abs=1e-5)
        assert estimate.confidence > 1.0 and estimate.agreement == 1.0


def test_averaging_over_windows_removes_the_decoys() -> None:
    """Each window's curve has a deeper minimum at a decoy shift of its own; only the true one is shared."""
    shifts = np.arange(-20, 21)
    curves = np.ones((9, len(shifts)))
    curves[:, 30] = 0.5  # the true shift, +10
    curves[np.arange(9), np.arange(9) * 3] = 0.1  # decoys at shifts -20, -17, ..., +4: one per window
    assert not any(np.argmin(curves, axis=1) == 30)
    for aggregate in ("mean", "median"):
        estimate = find_offset(curves, shifts, aggregate)
        assert shifts[estimate.best] == 10
        assert estimate.agreement == 0.0  # no window alone had it right


def test_missing_audio_window_is_an_error() -> None:
    audio = torch.zeros(10, 4)
    with pytest.raises(ValueError, match="not embedded"):
        distance_curves(torch.zeros(1, 4), audio, np.arange(10), np.array([8]), np.array([0, 4]))


def test_range_shrinks_to_what_the_file_holds() -> None:
    # 4 s (400 feature frames): a window at frame 37 (feature 148) with ±1.48 s fits (148 + 100 + 148 = 396)
    assert usable_range(400, 200, 1) == 148
    assert usable_range(400, 200, 4) == 148
    assert usable_range(800, 200, 1) == 200
    assert usable_range(102, 200, 1) == 0  # 1.02 s: not even ±10 ms fits with the window on the frame grid
    assert usable_range(104, 200, 1) == 0
    assert usable_range(108, 200, 4) == 4
    assert usable_range(400, 10**11 + 4, 4) == 148  # --range 1e9 counted down one step at a time: a hang
    starts = window_starts(600, 100, 5)
    assert starts[0] == 25 and starts[-1] <= (600 - 100 - 100) // 4 and np.all(np.diff(starts) == 5)


@pytest.mark.parametrize("index", range(len(OFFSETS)))
def test_detector_finds_the_true_offset_with_its_sign(shifted_videos: list[Path], index: int) -> None:
    path = shifted_videos[index]
    true = read_audio_offset(path)
    result = sync_file(EventDetector(), path, SETTINGS, config(), CPU)
    assert abs(result.offset_s - true) <= 0.04 + 1e-9, (true, result.offset_s)  # within one video frame
    assert result.offset_frames == pytest.approx(result.offset_s * 25)
    assert result.confidence > 0.5 and result.windows >= 10
    assert result.offsets_s[0] == -0.6 and result.offsets_s[-1] == 0.6 and len(result.offsets_s) == 121


def test_forty_ms_steps(shifted_videos: list[Path]) -> None:
    result = sync_file(EventDetector(), shifted_videos[2], SETTINGS, config(step=0.04), CPU)
    assert np.allclose(np.diff(result.offsets_s), 0.04)
    assert abs(result.offset_s - 0.28) <= 0.04 + 1e-9


def test_short_file_shrinks_the_range_or_fails(tmp_path: Path) -> None:
    (short,) = generate(SynthConfig(out=tmp_path / "short", videos=1, duration=2.0, size=64, seed=1, workers=1))
    result = sync_file(EventDetector(), short, SETTINGS, config(range=2.0), CPU)
    assert result.range_s < 1.0 and "range shrunk from ±2 s" in (result.note or "")
    (tiny,) = generate(
        SynthConfig(
            out=tmp_path / "tiny",
            videos=1,
            duration=0.8,
            size=64,
            seed=1,
            workers=1,
            min_gap=0.2,
            max_gap=0.3,
            event=0.1,
        )
    )
    with pytest.raises(SyncError, match="too short"):
        sync_file(EventDetector(), tiny, SETTINGS, config(), CPU)


def video_without_audio(path: Path, seconds: float = 2.0) -> Path:
    """A small H.264 MP4 with no audio stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), index * 4 % 256, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_cli_contract(
    shifted_videos: list[Path], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = video_without_audio(tmp_path / "no_audio.mp4")
    out = tmp_path / "out"
    argv = [
        str(shifted_videos[0]),
        str(shifted_videos[1]),
        str(silent),
        str(tmp_path / "missing.mp4"),
        "--checkpoint",
        str(checkpoint),
        "--short-side",
        "64",
        "--range",
        "0.5",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "sync.json").read_text())
    assert printed["sign_convention"].startswith("positive offset: the audio lags")
    assert printed["summary"] == {"files": 4, "measured": 2, "failed": 2}
    first, second, no_audio, missing = printed["files"]
    for row in (first, second):
        assert (
            row["ok"] and -0.5 <= row["offset_s"] <= 0.5 and row["offset_frames"] == pytest.approx(row["offset_s"] * 25)
        )
        assert row["confidence"] >= 0 and row["windows"] >= 1 and len(row["offsets_s"]) == len(row["distances"]) == 101
        png = Path(row["plot"])
        assert png.parent == out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(first["plot"]).name == "synth_00000.png" and Path(second["plot"]).name == "synth_00000-2.png"
    assert not no_audio["ok"] and "no audio" in no_audio["error"]
    assert not missing["ok"] and missing["error"]


def test_a_name_that_is_not_utf8_is_measured_and_reported(
    shifted_videos: list[Path], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vid\xe9o.mp4`` (Latin-1 bytes) crashed the run in the clip seeds' UTF-8 encoding, then in the plot title."""
    folder = os.fsencode(tmp_path)
    video = Path(os.fsdecode(folder + b"/vid\xe9o.mp4"))
    missing = Path(os.fsdecode(folder + b"/caf\xe9.mp4"))
    shutil.copy(shifted_videos[0], video)
    out = tmp_path / "out"
    argv = [str(video), str(missing), "--checkpoint", str(checkpoint), "--short-side", "64", "--range", "0.5"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    measured, failed = printed["files"]
    assert measured["ok"] and measured["path"] == f"{tmp_path}/vid\\xe9o.mp4"
    assert Path(measured["plot"]) == out / "vid\\xe9o.png" and Path(measured["plot"]).exists()
    assert -0.5 <= measured["offset_s"] <= 0.5 and measured["windows"] >= 1
    assert not failed["ok"] and failed["path"] == f"{tmp_path}/caf\\xe9.mp4"


def audio_only(path: Path, seconds: float = 2.0) -> Path:
    """An AAC file with a loud tone and no video stream."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * 16000)) / 16000)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_cli_fails_when_no_file_can_be_measured(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [video_without_audio(tmp_path / "no_audio.mp4"), audio_only(tmp_path / "no_video.m4a")]
    assert main([*map(str, files), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]) == 1
    report = json.loads((tmp_path / "out" / "sync.json").read_text())
    assert report["summary"] == {"files": 2, "measured": 0, "failed": 2}
    assert "no audio" in report["files"][0]["error"] and "no video" in report["files"][1]["error"]
    assert "no audio" in said(capsys.readouterr().out)
    assert not list((tmp_path / "out").glob("*.png"))


def test_cli_refuses_bad_checkpoints(
    shifted_videos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = str(shifted_videos[0])
    assert main([video, "--checkpoint", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "out")]) == 1
    assert "no checkpoint at" in said(capsys.readouterr().err)
    other = tiny_checkpoint(tmp_path / "other", declared_width=8)  # weights of width 4, spec says 8
    assert main([video, "--checkpoint", str(other), "--out", str(tmp_path / "out")]) == 1
    assert "its weights do not fit its declared architecture" in said(capsys.readouterr().err)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    assert main([video, "--checkpoint", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "out")]) == 1
    assert "not an AVTS checkpoint" in said(capsys.readouterr().err)


def test_cli_rejects_bad_flags(checkpoint: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["x.mp4", "--checkpoint", str(checkpoint), "--step", "0.015"])
    assert exit_info.value.code == 2
