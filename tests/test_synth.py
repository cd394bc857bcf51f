"""Tests for the synthetic audio-visual data generator (`pipeline.synth`, `avts-synth`).

Everything is checked on the encoded files, decoded back with PyAV, so the tests cover what a reader sees.
About 10 s on the 2-core CI box.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.synth import (
    SynthConfig,
    class_hue_range,
    class_pitch_band,
    generate,
    read_audio_offset,
    read_events,
    read_metadata,
)
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
    for path, video in zip(serial, decoded, strict=True):
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
    for path, video in zip(serial, decoded, strict=True):
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
    for path, video in zip(serial, decoded, strict=True):
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
    for one, two in zip(serial, parallel, strict=True):
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


ORIGINAL_METADATA_KEYS = {
    "avts_synth",
    "events",
    "event_s",
    "duration_s",
    "fps",
    "sample_rate",
    "seed",
    "index",
    "tone_hz",
    "background",
    "colour",
}


def audio_onset(audio: np.ndarray, around_s: float) -> float:
    """The first time after ``around_s`` - 50 ms where the 40-sample mean energy passes 0.01 (a burst starts)."""
    energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(40) / 40, mode="valid")
    lo = max(round((around_s - 0.05) * SR), 0)
    return (lo + int(np.argmax(energy[lo:] > 0.01))) / SR


def test_default_metadata_is_unchanged(serial: list[Path]) -> None:
    """Without --audio-offset and --classes the files hold exactly the metadata they always held."""
    for path in serial:
        assert set(read_metadata(path)) == ORIGINAL_METADATA_KEYS
        assert read_audio_offset(path) == 0.0


@pytest.mark.parametrize("offset", [0.2, -0.16])
def test_audio_offset_moves_the_sound_not_the_picture(tmp_path: Path, serial: list[Path], offset: float) -> None:
    shifted = generate(replace(CONFIG, out=tmp_path, videos=1, audio_offset=offset, workers=1))[0]
    assert read_audio_offset(shifted) == offset
    assert read_events(shifted) == read_events(serial[0])  # the same scene, only the sound moved
    video = decode(shifted)
    np.testing.assert_array_equal(video.frames, decode(serial[0]).frames)
    checked = 0
    for t in read_events(shifted):
        heard = t + offset
        if heard < 0.05 or heard + CONFIG.event > CONFIG.duration:
            continue  # cut at the ends of the file
        assert abs(audio_onset(video.audio, heard) - heard) < 0.005, (t, offset)
        checked += 1
    assert checked >= 3


def test_audio_offset_cuts_bursts_at_the_ends(tmp_path: Path, serial: list[Path]) -> None:
    """A burst moved across the start of the file keeps its tail, from sample 0; the length does not change."""
    offset = round(-(read_events(serial[0])[0] + 0.05), 4)  # the first burst starts 50 ms before the file
    video = decode(generate(replace(CONFIG, out=tmp_path, videos=1, workers=1, audio_offset=offset))[0])
    assert len(video.audio) / SR == pytest.approx(CONFIG.duration, abs=0.1)
    energy = video.audio.astype(np.float64) ** 2
    assert energy[round(0.005 * SR) : round(0.04 * SR)].mean() > 100 * energy[round(0.12 * SR) : round(0.2 * SR)].mean()


def dominant_frequency(audio: np.ndarray) -> float:
    """The frequency (Hz) of the largest magnitude of the whole signal's spectrum."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    return float(np.fft.rfftfreq(len(audio), 1 / SR)[int(np.argmax(spectrum))])


def test_classes_go_to_folders_with_their_traits(tmp_path: Path) -> None:
    paths = generate(replace(CONFIG, out=tmp_path, videos=6, classes=3, workers=2))
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "class_00/synth_00000.mp4",
        "class_01/synth_00001.mp4",
        "class_02/synth_00002.mp4",
        "class_00/synth_00003.mp4",
        "class_01/synth_00004.mp4",
        "class_02/synth_00005.mp4",
    ]
    for index, path in enumerate(paths):
        meta = read_metadata(path)
        label = index % 3
        assert meta["class"] == label
        low, high = class_pitch_band(label, 3)
        assert low <= meta["tone_hz"] <= high
        assert low - 10 <= dominant_frequency(decode(path).audio) <= high + 10  # what a listener hears
        hue, saturation, value = colorsys.rgb_to_hsv(*(np.array(meta["colour"]) / 255))
        first, last = class_hue_range(label, 3)
        assert first - 0.01 <= hue <= last + 0.01 and saturation >= 0.55 and value >= 0.55
    bands = [class_pitch_band(label, 3) for label in range(3)]
    assert bands[0][0] == 300.0 and bands[-1][1] == pytest.approx(1500.0) and bands[0][1] == bands[1][0]


def test_cli_offset_and_classes(tmp_path: Path) -> None:
    argv = [
        "--out",
        str(tmp_path),
        "--videos",
        "2",
        "--duration",
        "1",
        "--size",
        "32",
        "--workers",
        "1",
        "--audio-offset",
        "0.08",
        "--classes",
        "2",
    ]
    assert main(argv) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.mp4")) == [
        "class_00/synth_00000.mp4",
        "class_01/synth_00001.mp4",
    ]
    assert read_audio_offset(tmp_path / "class_01" / "synth_00001.mp4") == 0.08


def test_config_rejects_bad_offset_and_classes() -> None:
    with pytest.raises(ValueError, match="audio-offset"):
        SynthConfig(out=Path("unused"), videos=1, duration=2.0, audio_offset=-2.5)
    with pytest.raises(ValueError, match="classes"):
        SynthConfig(out=Path("unused"), videos=1, classes=0)
