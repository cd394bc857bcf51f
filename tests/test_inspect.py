"""`avts-inspect`: contact sheets of shard samples and pictures of training pairs (10 s on a quiet 2-core box, with
the shared fixtures' data and two extra `avts-synth` videos whose sound is 0.2 s late).

The sheet must say the truth about alignment: on `avts-synth` data the event times read from the source file
are the ones that ingest placed on the shard's clock, and the measured onset lag is ~0 for synchronized
videos and the known offset for shifted ones. The pairs drawn must be the sampler's: positives aligned,
easy negatives from another video, hard negatives from the same video at least 1 s + the gap away.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from avts.schema import Sample
from pipeline.synth import SynthConfig, generate, read_events
from tests.conftest import ingest_with_pool
from trainer.inspect import (
    brightness,
    draw_batch,
    event_times,
    iter_samples,
    loudness,
    onset_lag,
    read_sample,
    rgb_frames,
)
from trainer.inspect_cli import main
from trainer.sampler import NegativeMix

FRAME_S = 0.04  # one video frame: the resolution of the picture's onsets


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file (and a check that it is one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def late_audio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two avts-synth videos whose sound lags the picture by 0.2 s, and their ingested shards."""
    root = tmp_path_factory.mktemp("late_audio")
    generate(SynthConfig(out=root / "src", videos=2, duration=4.0, size=64, seed=5, workers=1, audio_offset=0.2))
    ingest_with_pool(root / "src", root / "shards", "--val-fraction", "0", "--short-side", "64", workers=1)
    return root / "src", root / "shards"


def test_event_times_are_the_source_files_on_the_shard_clock(train_shards: Path, synth_videos: Path) -> None:
    shards = sorted(str(path) for path in (train_shards / "shards").glob("*.tar"))
    samples = list(iter_samples(shards))
    assert len(samples) == len(list(synth_videos.glob("*.mp4")))  # every video, whichever shard it went to
    for sample in samples:
        events, note = event_times(sample, synth_videos)
        assert events is not None, note
        expected = [t - sample.meta.source_start_s for t in read_events(synth_videos / sample.meta.source)]
        assert events.picture == pytest.approx(expected) and events.sound == pytest.approx(expected)
        assert len(expected) >= 4  # 4-s videos, an event every 0.25-0.7 s


def test_synchronized_samples_measure_no_lag(train_shards: Path) -> None:
    shards = sorted(str(path) for path in (train_shards / "shards").glob("*.tar"))
    lags = [measured_lag(sample) for sample in iter_samples(shards)]
    assert max(abs(lag) for lag in lags) <= FRAME_S, lags


def test_late_sound_measures_its_offset(late_audio: tuple[Path, Path]) -> None:
    src, shards = late_audio
    for sample in iter_samples(sorted(str(path) for path in shards.glob("*.tar"))):
        assert measured_lag(sample) == pytest.approx(0.2, abs=FRAME_S)
        events, _ = event_times(sample, src)
        assert events is not None
        assert np.allclose(np.array(events.sound) - np.array(events.picture), 0.2)


def measured_lag(sample: Sample) -> float:
    """The onset lag the contact sheet reports for a sample, over the whole sample."""
    return onset_lag(brightness(rgb_frames(sample.video, 0, sample.meta.frames)), loudness(sample.fbank))


def test_sheet_cli_draws_the_chosen_sample(
    train_shards: Path, synth_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = train_shards / "shards"
    key = list(iter_samples([str(folder / "0001.tar")]))[1].key
    out = tmp_path / "sheet.png"
    assert (
        main(
            [
                str(folder),
                "--key",
                key,
                "--src",
                str(synth_videos),
                "--start",
                "0.5",
                "--seconds",
                "1.5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    width, height = png_size(out)
    assert width > 800 and 200 < height < 600
    said = capsys.readouterr().err
    assert key in said and "events from" in said


def test_sheet_without_source_says_how_to_mark_events(train_shards: Path, tmp_path: Path) -> None:
    sample = read_sample([str(train_shards / "shards" / "0000.tar")])
    events, note = event_times(sample, None)
    assert events is None and "--src" in note
    events, note = event_times(sample, tmp_path)
    assert events is None and "not found" in note
    assert main([str(train_shards / "shards" / "0000.tar"), "--out", str(tmp_path / "a.png")]) == 0
    assert png_size(tmp_path / "a.png")[0] > 800


def test_unknown_key_is_a_clear_error(train_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = train_shards / "shards" / "0000.tar"
    assert main([str(shard), "--key", "no_such_video", "--out", str(tmp_path / "x.png")]) == 1
    said = capsys.readouterr().err
    held = len(list(iter_samples([str(shard)])))
    assert "no sample 'no_such_video'" in said and f"it holds {held}:" in said
    assert not (tmp_path / "x.png").exists()


def test_a_start_past_the_sample_is_a_clear_error(
    train_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--start 1000`` on a 4-s sample drew its last 0.04 s with exit 0."""
    out = tmp_path / "x.png"
    assert main([str(train_shards / "shards" / "0000.tar"), "--start", "1000", "--out", str(out)]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "--start 1000 s is past the end of sample" in said and "s stored)" in said
    assert not out.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_shard_is_a_clear_error(
    damage: str, train_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard that is not a readable tar gave a tarfile.ReadError traceback."""
    data = (train_shards / "shards" / "0000.tar").read_bytes()
    shard = tmp_path / "0000.tar"
    shard.write_bytes(b"garbage" if damage == "garbage" else data[:1000])  # cut inside the first member
    assert main([str(shard), "--out", str(tmp_path / "x.png")]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert said.startswith(f"avts-inspect: {shard}: not a readable shard (a damaged or truncated tar: ")
    assert "Traceback" not in said and not (tmp_path / "x.png").exists()


def test_batch_draws_the_pairs_the_sampler_made(train_shards: Path, tmp_path: Path) -> None:
    shards = sorted(str(path) for path in (train_shards / "shards").glob("[0-9]*.tar"))
    out = tmp_path / "pairs.png"
    views = draw_batch(shards, out, pairs=8, mix=NegativeMix(easy=0.5, hard=0.5), seed=1)
    assert png_size(out)[0] > 800
    kinds = [view.kind for view in views]
    assert kinds.count("positive") == 4
    assert kinds.count("easy negative") + kinds.count("hard negative") == 4
    assert kinds.count("hard negative") >= 1  # 4-s videos fit a hard negative for most clips
    for view in views:
        if view.kind == "positive":
            assert view.audio_key == view.clip_key and view.offset_s == 0
        elif view.kind == "easy negative":
            assert view.audio_key != view.clip_key and view.offset_s is None
        else:  # a 1-s window at least the 0.5-s gap away from the 1-s clip
            assert view.audio_key == view.clip_key and view.offset_s is not None and abs(view.offset_s) >= 1.5
