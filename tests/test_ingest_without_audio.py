"""``--keep-without-audio``: labelled sets such as UCF101, where about half the videos have no sound, are
fine-tuned on video, so those videos must be ingested too (as silence), and training on sync must skip them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import log_filterbank, silent_features
from pipeline.config import EncodeSettings
from pipeline.discover import VideoItem
from pipeline.transcode import MediaError, transcode
from tests.conftest import make_av_clip


def settings(keep: bool) -> EncodeSettings:
    return EncodeSettings(
        short_side=64,
        crf=23,
        preset="ultrafast",
        mp3=False,
        mp3_bitrate=64000,
        min_duration=1.0,
        threads=1,
        keep_without_audio=keep,
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("no_audio")
    sound = make_av_clip(folder / "sound.mp4", 3.0, width=96, height=64)
    made = {"sound": sound, "mute": folder / "mute.mp4", "silent": folder / "silent.mp4"}
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(sound), "-an", "-c", "copy", str(made["mute"])], check=True
    )
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(sound),
            "-c:v",
            "copy",
            "-af",
            "volume=0",
            "-c:a",
            "aac",
            str(made["silent"]),
        ],
        check=True,
    )
    return made


def item(path: Path) -> VideoItem:
    return VideoItem("key", path, path.name, "label", "train", 0)


@pytest.mark.parametrize(("name", "reason"), [("mute", "no audio stream"), ("silent", "silent audio")])
def test_by_default_a_video_without_sound_fails(clips: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(MediaError) as caught:
        transcode(item(clips[name]), settings(False))
    assert caught.value.reason == reason


@pytest.mark.parametrize("name", ["mute", "silent"])
def test_kept_without_audio_it_has_silent_features_and_says_so(clips: dict[str, Path], name: str) -> None:
    done = transcode(item(clips[name]), settings(True))
    reference = transcode(item(clips["sound"]), settings(True)).sample
    assert done.sample.meta.audible is False and done.facts.audible is False
    assert done.sample.meta.frames == reference.meta.frames == 75
    assert done.sample.fbank.shape == reference.fbank.shape == (300, 40)
    assert np.array_equal(done.sample.fbank, np.broadcast_to(silent_features().astype(np.float16), (300, 40)))
    assert done.sample.video == reference.video  # the picture is stored as for any video


def test_silence_is_what_the_filterbank_gives_for_zeros() -> None:
    assert np.array_equal(silent_features(), log_filterbank(np.zeros(16000))[7])
    assert silent_features()[0] == pytest.approx(np.log(np.finfo(float).eps))


def test_a_video_with_sound_is_unchanged_by_the_option(clips: dict[str, Path]) -> None:
    kept = transcode(item(clips["sound"]), settings(True)).sample
    plain = transcode(item(clips["sound"]), settings(False)).sample
    assert kept.meta.audible is True and np.array_equal(kept.fbank, plain.fbank) and kept.video == plain.video
