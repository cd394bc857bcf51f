"""Tests for the synthetic audio-visual data generator (`pipeline.synth`, `avts-synth`).

Everything is checked on the encoded files, decoded back with PyAV, so the tests cover what a reader sees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.synth import SynthConfig, generate, read_events
from pipeline.synth_cli import main

FPS = 25
SR = 16000
CONFIG = SynthConfig(out=Path("unused"), videos=3, duration=3.0, size=64, seed=7)
AUDIO_WINDOW_S = 0.04  # energy window after each onset
QUIET_MARGIN_S = 0.07  # AAC smears sound up to one 1024-sample frame (64 ms) around a burst
PIXEL_CHANGE = 40  # a pixel "changes" when some channel moves by more than this between frames


@dataclass
class Decoded:
    frames: np.ndarray  # (T, H, W, 3) uint8 for rgb24
    audio: np.ndarray  # (N,) float32
    video_rate: float
    audio_codec: str
    audio_rate: int
    duration_s: float


def decode(path: Path, pixel_format: str = "rgb24") -> Decoded:
    """Decode every video frame (in ``pixel_format``) and audio sample of ``path``."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        info = (float(video.average_rate), audio.codec_context.name, audio.rate, container.duration / av.time_base)
        frames, samples = [], []
        for frame in container.decode(video, audio):
            if isinstance(frame, av.VideoFrame):
                frames.append(frame.to_ndarray(format=pixel_format))
            else:
                samples.append(frame.to_ndarray()[0])
    return Decoded(np.stack(frames), np.concatenate(samples), *info)


def visual_change(frames: np.ndarray) -> np.ndarray:
    """Per frame, the fraction of pixels that changed visibly since the previous frame (0 for the first)."""
    diff = np.abs(np.diff(frames.astype(np.int16), axis=0)).max(axis=-1)
    return np.concatenate([[0.0], (diff > PIXEL_CHANGE).mean(axis=(1, 2))])


def quiet_mask(length: int, rate: float, events: list[float], margin_s: float) -> np.ndarray:
    """True at positions (samples or frames at ``rate``) farther than ``margin_s`` from every event."""
    quiet = np.ones(length, dtype=bool)
    for t in events:
        quiet[int((t - margin_s) * rate) : int((t + CONFIG.event + margin_s) * rate) + 1] = False
    return quiet


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate(replace(CONFIG, out=tmp_path_factory.mktemp("serial"), workers=1))


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate(replace(CONFIG, out=tmp_path_factory.mktemp("parallel"), workers=2))


@pytest.fixture(scope="module")
def decoded(serial: list[Path]) -> list[Decoded]:
    return [decode(path) for path in serial]


def test_files_are_named_and_complete(serial: list[Path]) -> None:
    assert [p.name for p in serial] == ["synth_00000.mp4", "synth_00001.mp4", "synth_00002.mp4"]
    assert sorted(p.name for p in serial[0].parent.iterdir()) == [p.name for p in serial]


def test_streams(decoded: list[Decoded]) -> None:
    for video in decoded:
        assert video.video_rate == FPS
        assert abs(len(video.frames) - 75) <= 1
        assert video.frames.shape[1:] == (64, 64, 3)
        assert video.duration_s == pytest.approx(3.0, abs=0.1)
        assert video.audio_codec == "aac"
        assert video.audio_rate == SR
        assert len(video.audio) / SR == pytest.approx(3.0, abs=0.1)


def test_event_times(serial: list[Path]) -> None:
    for path in serial:
        events = np.array(read_events(path))
        assert len(events) >= 4
        gaps = np.diff(events, prepend=0.0)  # the first event follows the start like any other
        assert np.all(gaps >= CONFIG.min_gap - 1e-3) and np.all(gaps <= CONFIG.max_gap + 1e-3)
        assert events[-1] + CONFIG.event <= CONFIG.duration


def test_videos_differ_in_event_times(serial: list[Path]) -> None:
    events = [read_events(path) for path in serial]
    assert events[0] != events[1] != events[2] != events[0]


def test_audio_energy_peaks_at_events(serial: list[Path], decoded: list[Decoded]) -> None:
    for path, video in zip(serial, decoded):
        events = read_events(path)
        energy = video.audio.astype(np.float64) ** 2
        quiet = energy[quiet_mask(len(energy), SR, events, QUIET_MARGIN_S)].mean()
        for t in events:
            onset = round(t * SR)
            burst = energy[onset : onset + round(AUDIO_WINDOW_S * SR)].mean()
            before = energy[onset - round(AUDIO_WINDOW_S * SR) : onset].mean()
            assert burst > 100 * quiet, (path.name, t)
            assert burst > 10 * before, (path.name, t)  # the sound starts at the onset, not before


def test_visual_change_peaks_at_events(serial: list[Path], decoded: list[Decoded]) -> None:
    for path, video in zip(serial, decoded):
        events = read_events(path)
        change = visual_change(video.frames)
        quiet = change[quiet_mask(len(change), FPS, events, 1.5 / FPS)]
        assert quiet.max() < 0.005, path.name
        for t in events:
            onset = int(t * FPS)
            assert change[onset] > 0.03, (path.name, t)
            assert change[onset - 1] < 0.005, (path.name, t)  # nothing changes the frame before


def test_audio_and_video_onsets_agree(serial: list[Path], decoded: list[Decoded]) -> None:
    """Onsets detected independently in each decoded stream fall in the same video frame."""
    for path, video in zip(serial, decoded):
        events = read_events(path)
        change = visual_change(video.frames)
        energy = np.convolve(video.audio.astype(np.float64) ** 2, np.ones(40) / 40, mode="valid")
        for t in events:
            lo = round((t - 0.05) * SR)
            audio_onset = (lo + int(np.argmax(energy[lo:] > 0.01))) / SR
            # Within a frame of the onset nothing else changes: the previous flash ended >= 0.13 s earlier.
            lo = int(t * FPS) - 1
            video_onset = lo + int(np.argmax(change[lo : int(t * FPS) + 2]))
            assert abs(audio_onset - t) < 0.005, (path.name, t, audio_onset)
            assert video_onset / FPS - 0.005 <= audio_onset < (video_onset + 1) / FPS + 0.005, (path.name, t)


def test_same_seed_same_output_for_any_workers(serial: list[Path], parallel: list[Path]) -> None:
    for one, two in zip(serial, parallel):
        assert read_events(one) == read_events(two)
        # Compare the decoder's own planes: no colour conversion between the files and the check.
        a, b = decode(one, "yuv420p"), decode(two, "yuv420p")
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.audio, b.audio)


def test_other_seed_other_events(tmp_path: Path, serial: list[Path]) -> None:
    other = generate(replace(CONFIG, out=tmp_path, videos=1, seed=CONFIG.seed + 1))
    assert read_events(other[0]) != read_events(serial[0])


def test_existing_files_are_kept(serial: list[Path]) -> None:
    stamps = [p.stat().st_mtime_ns for p in serial]
    reports: list[int] = []
    assert generate(replace(CONFIG, out=serial[0].parent), reports.append) == serial
    assert reports == [1, 2, 3]
    assert [p.stat().st_mtime_ns for p in serial] == stamps


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--videos", "2", "--duration", "1", "--size", "32", "--workers", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "generating: 2/2 videos, 0 failed" in captured.err  # plain progress lines under CI
    assert "2 videos, 2 s of video" in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth_00000.mp4", "synth_00001.mp4"]


def test_config_rejects_sizes_and_overlapping_events() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        SynthConfig(out=Path("unused"), videos=1, size=30)
    with pytest.raises(ValueError, match="overlap"):
        SynthConfig(out=Path("unused"), videos=1, event=0.3)
