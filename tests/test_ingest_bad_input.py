"""avts-ingest on a corpus of unusual and broken inputs, all made here with the ffmpeg command line.

The corpus is cut from camera-like test clips (``make_av_clip``) and damaged on purpose; nothing outside the
repository is needed. Unusual-but-valid files (odd frame size, rotation metadata, 8 kHz mono and 5.1 audio,
non-ASCII names, a wrong extension, a class sub-folder, audio timestamps that skip a second, two audio streams)
must be ingested; broken ones (random bytes, truncated MP4s, damaged packets, an empty file, a text file, no audio,
audio only, cover art, one frame, too short, digitally silent, a broken symlink) must become ``failed`` rows with
a clear reason, without failing the run. With ``--keep-truncated`` the damaged files keep their decoded part and
their rows say what was damaged. A folder holding only broken files must end the run with a clear message and a
non-zero exit, never a traceback. Three ingest runs (all files; the damaged ones kept; only the broken ones):
about 45 s on a 2-core CPU box.
"""

from __future__ import annotations

import io
import json
import os
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

from avts.schema import FBANK_FILTERS, FEATURES_PER_FRAME, VIDEO_FPS, Sample, decode_sample
from pipeline.transcode import pick_audio_stream
from tests.conftest import make_av_clip, run_cli
from tests.test_audio_timing import corrupt_audio_packets, overwrite_middle

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
    "gap.mkv": "audio timestamps skip 4-5 s (the issue's aselect command): placed by them, the gap recorded",
    "two_audio.mp4": "mono default audio stream first, stereo second: the default one is used",
}
# bad inputs: relative path -> the reason its failed row must carry
BAD = {
    "corrupt.mp4": "not a media file",
    "trunc_moov_end.mp4": "not a media file",  # moov atom at the end: cut off, so nothing to open
    "trunc_faststart.mp4": "truncated",  # moov first: the ~1 s before the cut decodes
    "trunc_35s_head.mp4": "truncated",  # the first ~15% of a 35-s faststart MP4
    "aac_16_corrupt.mp4": "corrupt",  # 16 AAC packets overwritten by random bytes: 1 s of audio lost
    "garbage_20k.mp4": "corrupt",  # 20 KB of random bytes over the middle of the file
    "corrupt_middle.mp4": "corrupt",  # 10% of the file, in its middle, overwritten
    "empty.mp4": "empty file",
    "notes.txt": "not a media file",  # ffmpeg's tty demuxer would open .txt/.nfo text as an ANSI-art video
    "release.nfo": "not a media file",
    "no_audio.mp4": "no audio stream",
    "audio_only.m4a": "no video stream",
    "cover_art.mp3": "no video stream",  # its only "video" is an attached picture
    "one_frame.mp4": "too short",
    "short.mp4": "too short",
    "silent.mp4": "silent audio",
    "broken_link.mp4": "unreadable",  # a symlink to a file that does not exist
    "named_pipe.mp4": "not a regular file",  # a FIFO: opening it would wait for a writer for ever
    "dev_zero.mp4": "not a regular file",  # a symlink to /dev/zero: reading it never ends
}
DAMAGED = ["trunc_faststart.mp4", "trunc_35s_head.mp4", "aac_16_corrupt.mp4", "garbage_20k.mp4", "corrupt_middle.mp4"]


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg command line, failing loudly."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True, capture_output=True)


def truncate(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def make_corpus(work: Path) -> Path:
    """Write every GOOD and BAD file under ``work/src``; returns that folder."""
    src = work / "src"
    (src / "dogs").mkdir(parents=True)
    x264 = ["-c:v", "libx264", "-preset", "ultrafast"]
    base = make_av_clip(work / "base.mp4", 3.5)  # 454x256 25 fps, AAC 16 kHz mono, loud; moov at the end
    speech = make_av_clip(work / "speech.mp4", 3.5, channels=2, seed=1)  # AAC 16 kHz stereo
    ten = make_av_clip(work / "ten.mp4", 10.0, width=192, height=108, seed=2)
    long_fs = make_av_clip(
        work / "long_faststart.mp4", 35.0, width=192, height=108, seed=3, extra=("-movflags", "+faststart")
    )

    ffmpeg("-i", base, "-vf", "scale=333:247", *x264, "-pix_fmt", "yuv444p", "-c:a", "copy", src / "odd_333x247.mp4")
    ffmpeg("-i", base, "-c", "copy", "-metadata:s:v:0", "rotate=90", src / "rotated.mp4")
    ffmpeg("-i", speech, "-c:v", "copy", "-c:a", "aac", "-ar", "8000", "-ac", "1", src / "audio_8k_mono.mp4")
    ffmpeg("-i", speech, "-c:v", "copy", "-c:a", "aac", "-ac", "6", src / "audio_5.1.mp4")
    shutil.copy(speech, src / "vidéo ñ.mp4")
    shutil.copy(base, src / "视频 clip.mp4")
    shutil.copy(speech, src / "mp4_named.dat")
    shutil.copy(base, src / "dogs" / "dog walk.mp4")
    ffmpeg("-i", ten, "-c:v", "copy", "-af", "aselect='not(between(t,4,5))'", "-c:a", "aac", src / "gap.mkv")
    ffmpeg(
        "-i",
        base,
        "-i",
        speech,
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-map",
        "1:a",
        "-c",
        "copy",
        "-disposition:a:0",
        "default",
        "-disposition:a:1",
        "0",
        src / "two_audio.mp4",
    )

    (src / "corrupt.mp4").write_bytes(random.Random(1234).randbytes(200_000))
    truncate(base, src / "trunc_moov_end.mp4", 0.3)
    faststart = work / "faststart.mp4"
    ffmpeg("-i", base, "-c", "copy", "-movflags", "+faststart", faststart)
    truncate(faststart, src / "trunc_faststart.mp4", 0.3)
    truncate(long_fs, src / "trunc_35s_head.mp4", 0.15)
    corrupt_audio_packets(ten, src / "aac_16_corrupt.mp4", from_s=4.0, count=16)
    overwrite_middle(ten, src / "garbage_20k.mp4", 20_000)
    overwrite_middle(ten, src / "corrupt_middle.mp4", ten.stat().st_size // 10)
    (src / "empty.mp4").write_bytes(b"")
    notes = "Shot list for Tuesday.\nNot a video, just notes.\n" * 20
    (src / "notes.txt").write_text(notes, encoding="utf-8")
    (src / "release.nfo").write_text(notes, encoding="utf-8")
    ffmpeg("-i", base, "-c", "copy", "-an", src / "no_audio.mp4")
    ffmpeg("-i", speech, "-vn", "-c:a", "copy", src / "audio_only.m4a")
    ffmpeg(
        "-i",
        speech,
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x64:d=1",
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-frames:v",
        "1",
        "-c:a",
        "libmp3lame",
        "-c:v",
        "mjpeg",
        "-disposition:v:0",
        "attached_pic",
        src / "cover_art.mp3",
    )
    ffmpeg("-i", base, "-vf", r"select=eq(n\,0)", "-vsync", "passthrough", *x264, "-c:a", "copy", src / "one_frame.mp4")
    ffmpeg("-t", "1.5", "-i", speech, "-c", "copy", src / "short.mp4")
    ffmpeg("-i", base, "-c:v", "copy", "-af", "volume=0", "-c:a", "aac", src / "silent.mp4")
    os.symlink(work / "no_such_video.mp4", src / "broken_link.mp4")
    os.mkfifo(src / "named_pipe.mp4")
    os.symlink("/dev/zero", src / "dev_zero.mp4")

    written = sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() or p.is_symlink() or p.is_fifo()
    )
    assert written == sorted([*GOOD, *BAD])
    return src


def copy_entry(src: Path, dst: Path) -> None:
    """Copy a corpus file; a symlink stays a symlink, a named pipe a named pipe."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_fifo():
        os.mkfifo(dst)
    else:
        shutil.copy(src, dst)


def ingest(src: Path, out_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "pipeline.cli",
        "--src",
        str(src),
        "--out",
        str(out_root / "shards"),
        "--engine",
        "processes",
        "--workers",
        "2",
        "--shard-size",
        "3",
        "--min-duration",
        str(MIN_DURATION),
        *extra,
        timeout=300,
    )


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

    def sample(self, relpath: str) -> Sample:
        row = self.videos.loc[relpath]
        return decode_sample(read_shard(self.root / "shards" / row.shard)[row.key])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bad_input")
    make_corpus(work)
    return work


def run_over(src: Path, root: Path, *extra: str) -> Run:
    result = ingest(src, root, *extra)
    videos = pd.read_parquet(root / "manifests" / "videos.parquet")
    return Run(src, root, result, videos.set_index("path"))


@pytest.fixture(scope="module")
def mixed(work: Path) -> Run:
    """One run over the whole corpus, good and bad files together."""
    return run_over(work / "src", work / "mixed")


@pytest.fixture(scope="module")
def kept(work: Path) -> Run:
    """The damaged files alone, with --keep-truncated."""
    src = work / "damaged"
    src.mkdir()
    for relpath in DAMAGED:
        copy_entry(work / "src" / relpath, src / relpath)
    return run_over(src, work / "kept", "--keep-truncated")


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
    path = mixed.src / relpath
    assert row.source_bytes == (path.stat().st_size if path.exists() else 0)


def test_failure_details_say_what_was_wrong(mixed: Run) -> None:
    reasons = mixed.videos.reason + mixed.videos.detail.map(lambda detail: "" if pd.isna(detail) else f": {detail}")
    assert reasons["audio_only.m4a"] == "no video stream: audio only"
    assert reasons["cover_art.mp3"] == "no video stream: audio only (cover art)"
    assert reasons["no_audio.mp4"] == "no audio stream"
    assert reasons["empty.mp4"] == "empty file"
    assert reasons["named_pipe.mp4"] == "not a regular file: a named pipe; only files are read"  # was "empty file"
    assert reasons["dev_zero.mp4"] == "not a regular file: a character device; only files are read"
    assert reasons["one_frame.mp4"] == "too short: 0.04 s < 2.5 s"
    assert re.fullmatch(r"unreadable: .*broken symlink.*", reasons["broken_link.mp4"]), reasons["broken_link.mp4"]
    short = re.fullmatch(r"too short: ([\d.]+) s < 2\.5 s", reasons["short.mp4"])
    assert short and 1.3 <= float(short.group(1)) <= 1.7, reasons["short.mp4"]
    cut = re.fullmatch(r"truncated: decoded ([\d.]+) of 3\.5 s", reasons["trunc_faststart.mp4"])
    assert cut and 0.3 <= float(cut.group(1)) < 2.5, reasons["trunc_faststart.mp4"]
    head = re.fullmatch(r"truncated: decoded ([\d.]+) of 35\.0 s", reasons["trunc_35s_head.mp4"])
    assert head and 3.0 <= float(head.group(1)) <= 8.0, reasons["trunc_35s_head.mp4"]
    assert reasons["aac_16_corrupt.mp4"] == "corrupt: 1.0 s lost mid-file to undecodable data (16 bad packets)"
    for relpath in ("garbage_20k.mp4", "corrupt_middle.mp4"):
        lost = re.fullmatch(
            r"corrupt: ([\d.]+) s lost mid-file to undecodable data \((\d+) bad packets\)", reasons[relpath]
        )
        assert lost and float(lost.group(1)) > 0.5 and int(lost.group(2)) == mixed.videos.loc[relpath, "decode_errors"]
    assert reasons["silent.mp4"] == "silent audio: RMS -inf dBFS"  # every sample is exactly 0
    # what the headers said is kept for files that opened
    assert mixed.videos.loc["no_audio.mp4", "has_audio"] == False  # noqa: E712 - numpy bool
    assert mixed.videos.loc["no_audio.mp4", "width"] == 454
    assert mixed.videos.loc["audio_only.m4a", "has_audio"] == True  # noqa: E712
    assert mixed.videos.loc["trunc_35s_head.mp4", "source_duration_s"] == pytest.approx(35.0, abs=0.1)


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
        assert sample.meta.audio_stream == row.audio_stream


def test_unusual_but_valid_inputs_keep_their_facts(mixed: Run) -> None:
    rows = mixed.videos
    for relpath in GOOD:
        assert rows.loc[relpath, "duration_s"] == pytest.approx(10.0 if relpath == "gap.mkv" else 3.5, abs=0.1)
        assert not rows.loc[relpath, "truncated"] and rows.loc[relpath, "decode_errors"] == 0
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


def test_audio_timestamp_gap_is_kept_with_its_gap_recorded(mixed: Run) -> None:
    row = mixed.videos.loc["gap.mkv"]
    assert (row.status, row.audio_gaps, row.lost_s) == ("ok", 1, 0.0)
    assert 0.95 <= row.audio_gap_s <= 1.05
    assert pd.isna(row.detail)
    sample = mixed.sample("gap.mkv")
    assert (sample.meta.audio_gaps, sample.meta.audio_gap_s) == (1, row.audio_gap_s)
    clean = mixed.videos.drop(index="gap.mkv").query("status == 'ok'")
    assert (clean.audio_gaps == 0).all() and (clean.audio_gap_s == 0).all() and (clean.audio_overlaps == 0).all()


def test_two_audio_streams_use_the_default_one_like_the_ffmpeg_cli(mixed: Run, work: Path) -> None:
    row = mixed.videos.loc["two_audio.mp4"]
    assert (row.status, row.audio_stream, row.audio_channels) == ("ok", 1, 1)  # stream 2 has more channels
    assert mixed.sample("two_audio.mp4").meta.audio_stream == 1
    # without a default stream the command line takes the one with most channels (a higher bit rate does not count)
    no_default = work / "two_audio_no_default.mkv"
    ffmpeg(
        "-i",
        work / "base.mp4",
        "-i",
        work / "speech.mp4",
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-b:a:0",
        "128k",
        "-b:a:1",
        "32k",
        "-disposition:a:0",
        "0",
        "-disposition:a:1",
        "0",
        no_default,
    )
    with av.open(str(no_default)) as container:
        chosen = pick_audio_stream(container)
        assert chosen is not None and (chosen.index, chosen.codec_context.channels) == (2, 2)


def test_truncated_and_corrupt_files_keep_their_decoded_part_when_asked(kept: Run) -> None:
    assert kept.result.returncode == 0, kept.result.stderr
    rows = kept.videos
    short = rows.loc["trunc_faststart.mp4"]  # kept, but what decoded is too short anyway
    assert (short.status, short.reason) == ("failed", "too short")
    head = rows.loc["trunc_35s_head.mp4"]
    assert head.status == "ok" and head.truncated and head.lost_s == 0
    assert re.fullmatch(r"truncated: decoded [\d.]+ of 35\.0 s", head.detail), head.detail
    assert 3.0 <= head.duration_s <= 8.0 and head.source_duration_s == pytest.approx(35.0, abs=0.1)
    assert kept.sample("trunc_35s_head.mp4").meta.truncated
    aac = rows.loc["aac_16_corrupt.mp4"]
    assert aac.status == "ok" and not aac.truncated and aac.decode_errors == 16
    assert aac.detail == "corrupt: 1.0 s lost mid-file to undecodable data (16 bad packets)"
    assert aac.lost_s == pytest.approx(1.024) and aac.audio_gaps == 1 and aac.audio_gap_s == pytest.approx(1.024)
    assert kept.sample("aac_16_corrupt.mp4").meta.lost_s == pytest.approx(1.024)
    for relpath in ("garbage_20k.mp4", "corrupt_middle.mp4"):
        row = rows.loc[relpath]
        assert row.status == "ok" and row.lost_s > 0.5 and row.detail.startswith("corrupt: "), (relpath, row.detail)
        assert row.duration_s == pytest.approx(10.0, abs=0.1)


def test_rotation_metadata_is_applied_like_the_ffmpeg_command_line(mixed: Run) -> None:
    sample = mixed.sample("rotated.mp4")
    frame, width, height = first_frame_gray(sample.video)
    assert (width, height) == (SHORT_SIDE, 228)  # portrait: 454x256 turned a quarter, short side 128
    assert (sample.meta.width, sample.meta.height) == (256, 454)  # source size after rotation

    def cli_first_frame(path: Path, rotate: str) -> np.ndarray:
        raw = subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                str(path),
                "-vf",
                f"{rotate}scale={width}:{height}",
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "gray",
                "-",
            ],
            capture_output=True,
            check=True,
        ).stdout
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
        copy_entry(work / "src" / relpath, src / relpath)
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
