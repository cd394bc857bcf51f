"""avts-ingest on a corpus of unusual and broken inputs, made here from short cuts of the real clips.

Unusual-but-valid files (odd frame size, rotation metadata, 8 kHz mono and 5.1 audio, non-ASCII names, a
wrong extension, a class sub-folder) must be ingested; broken ones (random bytes, truncated MP4s, an empty
file, a text file, no audio, audio only, too short, digitally silent) must become ``failed`` rows with a
clear reason, without failing the run. A folder holding only broken files must end the run with a clear
message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from avts.schema import FBANK_FILTERS, FEATURES_PER_FRAME, VIDEO_FPS, decode_sample
from tests.conftest import run_cli

VGG = "synchformer_vggsound_3qesirWAGt4_20000_30000.mp4"  # 454x256 25 fps, AAC 16 kHz mono, loud
LRS3 = "synchformer_lrs3_C8zY0oAdQrs_00018.mp4"  # 454x256 25 fps, AAC 16 kHz stereo, speech
SHORT_SIDE = 128
MIN_DURATION = 2.5
SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

# good-but-unusual inputs: relative path -> what is special about it
GOOD = {
    "odd_333x247.mp4": "odd frame size, yuv444p",
    "rotated.mp4": "display-matrix rotation 90, stream copy",
    "audio_8k_mono.mp4": "8 kHz mono AAC",
    "audio_5.1.mp4": "6-channel AAC, dot in the stem",
    "vidéo ñ.mp4": "non-ASCII name with a space",
    "视频 clip.mp4": "CJK name with a space",
    "mp4_named.dat": "an MP4 with a wrong extension",
    "dogs/dog walk.mp4": "class sub-folder",
    "trunc_faststart_long.mp4": "faststart MP4 cut to 30% of its bytes: decodes the first ~3 s",
}
# bad inputs: relative path -> the reason prefix its failed row must carry
BAD = {
    "corrupt.mp4": "not a media file",
    "trunc_moov_end.mp4": "not a media file",  # moov atom at the end: cut off, so nothing to open
    "trunc_faststart.mp4": "too short",  # moov first: the ~1 s before the cut decodes, too little
    "empty.mp4": "empty file",
    "notes.txt": "not a media file",  # ffmpeg's tty demuxer would open .txt/.nfo text as an ANSI-art video
    "release.nfo": "not a media file",
    "no_audio.mp4": "no audio stream",
    "audio_only.m4a": "no video stream",
    "short.mp4": "too short",
    "silent.mp4": "silent audio",
}


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg command line, failing loudly."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True, capture_output=True)


def truncate(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def make_corpus(real_clips: Path, work: Path) -> Path:
    """Write every GOOD and BAD file under ``work/src``; returns that folder."""
    src = work / "src"
    (src / "dogs").mkdir(parents=True)
    x264 = ["-c:v", "libx264", "-preset", "ultrafast"]
    base, speech, long_fs = work / "base.mp4", work / "speech.mp4", work / "long_faststart.mp4"
    ffmpeg("-t", "3.5", "-i", real_clips / VGG, *x264, "-c:a", "aac", base)  # moov at the end (default)
    ffmpeg("-t", "3.5", "-i", real_clips / LRS3, *x264, "-c:a", "aac", speech)
    ffmpeg("-t", "10", "-i", real_clips / VGG, *x264, "-c:a", "aac", "-movflags", "+faststart", long_fs)

    ffmpeg("-i", base, "-vf", "scale=333:247", *x264, "-pix_fmt", "yuv444p", "-c:a", "copy", src / "odd_333x247.mp4")
    ffmpeg("-i", base, "-c", "copy", "-metadata:s:v:0", "rotate=90", src / "rotated.mp4")
    ffmpeg("-i", speech, "-c:v", "copy", "-c:a", "aac", "-ar", "8000", "-ac", "1", src / "audio_8k_mono.mp4")
    ffmpeg("-i", speech, "-c:v", "copy", "-c:a", "aac", "-ac", "6", src / "audio_5.1.mp4")
    shutil.copy(speech, src / "vidéo ñ.mp4")
    shutil.copy(base, src / "视频 clip.mp4")
    shutil.copy(speech, src / "mp4_named.dat")
    shutil.copy(base, src / "dogs" / "dog walk.mp4")
    truncate(long_fs, src / "trunc_faststart_long.mp4", 0.3)

    (src / "corrupt.mp4").write_bytes(random.Random(1234).randbytes(200_000))
    truncate(base, src / "trunc_moov_end.mp4", 0.3)
    faststart = work / "faststart.mp4"
    ffmpeg("-i", base, "-c", "copy", "-movflags", "+faststart", faststart)
    truncate(faststart, src / "trunc_faststart.mp4", 0.3)
    (src / "empty.mp4").write_bytes(b"")
    notes = "Shot list for Tuesday.\nNot a video, just notes.\n" * 20
    (src / "notes.txt").write_text(notes, encoding="utf-8")
    (src / "release.nfo").write_text(notes, encoding="utf-8")
    ffmpeg("-i", base, "-c", "copy", "-an", src / "no_audio.mp4")
    ffmpeg("-i", speech, "-vn", "-c:a", "copy", src / "audio_only.m4a")
    ffmpeg("-t", "1.5", "-i", speech, "-c", "copy", src / "short.mp4")
    ffmpeg("-i", base, "-c:v", "copy", "-af", "volume=0", "-c:a", "aac", src / "silent.mp4")

    written = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    assert written == sorted([*GOOD, *BAD])
    return src


def ingest(src: Path, out_root: Path) -> subprocess.CompletedProcess:
    return run_cli("pipeline.cli", "--src", str(src), "--out", str(out_root / "shards"), "--engine", "processes",
                   "--workers", "2", "--shard-size", "3", "--min-duration", str(MIN_DURATION), timeout=300)


@dataclass
class Run:
    src: Path
    root: Path
    result: subprocess.CompletedProcess
    videos: pd.DataFrame  # indexed by relative path

    @property
    def stderr(self) -> str:
        """stderr with line wrapping undone (the console wraps at the terminal width)."""
        return " ".join(self.result.stderr.split())


@pytest.fixture(scope="module")
def work(real_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bad_input")
    make_corpus(real_clips, work)
    return work


@pytest.fixture(scope="module")
def mixed(work: Path) -> Run:
    """One run over the whole corpus, good and bad files together."""
    result = ingest(work / "src", work / "mixed")
    videos = pd.read_parquet(work / "mixed" / "manifests" / "videos.parquet")
    return Run(work / "src", work / "mixed", result, videos.set_index("path"))


def read_shard(path: Path) -> dict[str, dict]:
    """Raw member dicts of a shard tar, by key (as webdataset groups them)."""
    samples: dict[str, dict] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
    return samples


def first_frame_gray(video: bytes) -> tuple[np.ndarray, int, int]:
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        return frame.to_ndarray(format="gray").astype(np.float64), stream.width, stream.height


def test_run_succeeds_with_one_row_per_input_file(mixed: Run) -> None:
    assert mixed.result.returncode == 0, mixed.result.stderr
    assert "Traceback" not in mixed.result.stderr
    assert sorted(mixed.videos.index) == sorted([*GOOD, *BAD])
    assert mixed.videos.key.is_unique
    assert set(mixed.videos.status) == {"ok", "failed"}


@pytest.mark.parametrize("relpath", sorted(BAD))
def test_bad_file_becomes_a_failed_row_with_a_clear_reason(mixed: Run, relpath: str) -> None:
    row = mixed.videos.loc[relpath]
    assert row.status == "failed"
    assert row.reason == BAD[relpath], (row.reason, row.detail)
    assert pd.isna(row.detail) or ("Traceback" not in row.detail and len(row.detail) < 300)
    assert pd.isna(row.shard)
    assert np.isnan(row.duration_s)
    assert row.source_bytes == (mixed.src / relpath).stat().st_size


def test_failure_details_say_what_was_wrong(mixed: Run) -> None:
    reasons = mixed.videos.reason + mixed.videos.detail.map(lambda detail: "" if pd.isna(detail) else f": {detail}")
    assert reasons["audio_only.m4a"] == "no video stream: audio only"
    assert reasons["no_audio.mp4"] == "no audio stream"
    assert reasons["empty.mp4"] == "empty file"
    short = re.fullmatch(r"too short: ([\d.]+) s < 2\.5 s", reasons["short.mp4"])
    assert short and 1.3 <= float(short.group(1)) <= 1.7, reasons["short.mp4"]
    cut = re.fullmatch(r"too short: ([\d.]+) s < 2\.5 s", reasons["trunc_faststart.mp4"])
    assert cut and 0.3 <= float(cut.group(1)) < 2.5, reasons["trunc_faststart.mp4"]
    assert reasons["silent.mp4"] == "silent audio: RMS -inf dBFS"  # every sample is exactly 0
    # what the headers said is kept for files that opened
    assert mixed.videos.loc["no_audio.mp4", "has_audio"] == False  # noqa: E712 - numpy bool
    assert mixed.videos.loc["no_audio.mp4", "width"] == 454
    assert mixed.videos.loc["audio_only.m4a", "has_audio"] == True  # noqa: E712


def test_good_files_are_ok_and_stored_in_the_shard_their_row_names(mixed: Run) -> None:
    shards = pd.read_parquet(mixed.root / "manifests" / "shards.parquet").set_index("shard")
    contents = {name: read_shard(mixed.root / "shards" / name) for name in shards.index}
    for name, samples in contents.items():
        assert shards.loc[name, "samples"] == len(samples)
    stored_keys = [key for samples in contents.values() for key in samples]
    assert sorted(stored_keys) == sorted(mixed.videos.loc[list(GOOD), "key"])  # nothing else, no duplicates
    for relpath in GOOD:
        row = mixed.videos.loc[relpath]
        assert row.status == "ok", (relpath, row.reason)
        assert SAFE_KEY.match(row.key), row.key
        raw = contents[row.shard][row.key]
        sample = decode_sample(raw)
        assert sample.meta.source == relpath and sample.meta.key == row.key
        assert sample.meta.frames / VIDEO_FPS == pytest.approx(row.duration_s)
        assert sample.fbank.shape == (FEATURES_PER_FRAME * sample.meta.frames, FBANK_FILTERS)
        assert np.isfinite(sample.fbank.astype(np.float32)).all()
        _, width, height = first_frame_gray(sample.video)
        assert min(width, height) == SHORT_SIDE and width % 2 == 0 and height % 2 == 0, (relpath, width, height)
        assert (width, height) == (sample.meta.stored_width, sample.meta.stored_height)


def test_unusual_but_valid_inputs_keep_their_facts(mixed: Run) -> None:
    rows = mixed.videos
    for relpath in GOOD:
        if relpath != "trunc_faststart_long.mp4":
            assert rows.loc[relpath, "duration_s"] == pytest.approx(3.5, abs=0.1), relpath
    odd = rows.loc["odd_333x247.mp4"]
    assert (odd.width, odd.height) == (333, 247)
    assert rows.loc["audio_8k_mono.mp4", "audio_sample_rate"] == 8000
    assert rows.loc["audio_8k_mono.mp4", "audio_channels"] == 1
    assert rows.loc["audio_5.1.mp4", "audio_channels"] == 6
    assert rows.loc["dogs/dog walk.mp4", "label"] == "dogs"
    assert rows.drop(index="dogs/dog walk.mp4").label.isna().all()
    # the stem of a non-ASCII name is kept where it is ASCII and replaced where not, never empty
    assert rows.loc["vidéo ñ.mp4", "key"].startswith("vid_o-")
    assert rows.loc["视频 clip.mp4", "key"].startswith("clip-")
    assert rows.loc["mp4_named.dat", "key"].startswith("mp4_named-")


def test_truncated_faststart_file_keeps_the_part_before_the_cut(mixed: Run) -> None:
    row = mixed.videos.loc["trunc_faststart_long.mp4"]
    assert row.status == "ok"
    assert MIN_DURATION <= row.duration_s < 5.0  # the source lasts 10 s; about 30% of it survived the cut
    assert row.decode_errors >= 1  # the cut was noticed, not silently ignored


def test_rotation_metadata_is_applied_like_the_ffmpeg_command_line(mixed: Run) -> None:
    row = mixed.videos.loc["rotated.mp4"]
    sample = decode_sample(read_shard(mixed.root / "shards" / row.shard)[row.key])
    frame, width, height = first_frame_gray(sample.video)
    assert (width, height) == (SHORT_SIDE, 228)  # portrait: 454x256 turned a quarter, short side 128
    assert (sample.meta.width, sample.meta.height) == (256, 454)  # source size after rotation

    def cli_first_frame(path: Path, rotate: str) -> np.ndarray:
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"{rotate}scale={width}:{height}",
                              "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                             capture_output=True, check=True).stdout
        return np.frombuffer(raw, np.uint8).reshape(height, width).astype(np.float64)

    autorotated = cli_first_frame(mixed.src / "rotated.mp4", "")  # the CLI applies the display matrix itself
    unrotated = mixed.src / "视频 clip.mp4"  # same pixels, no rotation metadata
    other_way = [cli_first_frame(unrotated, "transpose=clock,"), cli_first_frame(unrotated, "transpose=cclock,")]
    other_way = max(other_way, key=lambda img: np.abs(img - autorotated).mean())  # the one that differs
    error, wrong = np.abs(frame - autorotated).mean(), np.abs(frame - other_way).mean()
    assert error < 6 and error < wrong / 4, (error, wrong)


def test_summary_on_stderr_lists_every_failure_reason(mixed: Run) -> None:
    assert "avts-ingest summary" in mixed.stderr
    counts = pd.Series(BAD).value_counts()
    for reason, count in counts.items():
        assert re.search(rf"│ {re.escape(reason)} │ {count} │", mixed.stderr), (reason, mixed.result.stderr)
    assert re.search(rf"│ failed │ {len(BAD)} │", mixed.stderr)
    assert re.search(rf"│ ingested │ {len(GOOD)} │", mixed.stderr)


def test_stats_use_a_seeded_share_of_the_ingested_training_videos(mixed: Run) -> None:
    videos = mixed.videos
    ingested_train = videos[(videos.split == "train") & (videos.status == "ok")]
    chosen = videos[videos.in_stats_subset]
    assert ((chosen.split == "train") & (chosen.status == "ok")).all()  # failed videos never count
    assert len(chosen) == max(1, round(0.2 * len(ingested_train)))
    stats = json.loads((mixed.root / "manifests" / "stats.json").read_text())
    assert stats["videos"] == len(chosen)


def test_a_folder_of_only_bad_files_fails_clearly(work: Path) -> None:
    src = work / "only_bad"
    src.mkdir()
    for relpath in BAD:
        shutil.copy(work / "src" / relpath, src / relpath)
    result = ingest(src, work / "only_bad_out")
    stderr = " ".join(result.stderr.split())
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"nothing was ingested from {len(BAD)} files" in stderr, result.stderr
    for reason in set(BAD.values()):
        assert f"'{reason}'" in stderr
    videos = pd.read_parquet(work / "only_bad_out" / "manifests" / "videos.parquet")  # the message points here
    assert sorted(videos.path) == sorted(BAD) and (videos.status == "failed").all()
    assert not (work / "only_bad_out" / "manifests" / "stats.json").exists()
