"""Audio placed by its timestamps, on real files made with the ffmpeg command line (issue 10, point 1).

A 10-s camera-like clip (``make_av_clip``: a tone that changes pitch every second, over noise) and damaged copies:
``gap.mkv`` made exactly as in the issue (``-af "aselect='not(between(t,4,5))'"``: the audio timestamps skip a
second, nothing is undecodable), 16 AAC packets overwritten with random bytes from 4 s on, and 20 KB of random
bytes written over the middle of the file. Joining the decoded audio end to end (what the ingest did before) put
the audio after the damage ~1 s early; placed by timestamps it lines up with the clean clip's features, with
silence where audio is missing. For clean files the features are exactly those of joining end to end.
Also the clocks of joined recordings, and (last) the stored picture's range. Each transcode runs in-process;
about 20 s on a 2-core CPU box.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from python_speech_features import logfbank

from avts.schema import AUDIO_SAMPLE_RATE, FEATURE_RATE, audio_samples_for
from pipeline.audio import AudioCollector
from pipeline.config import EncodeSettings
from pipeline.discover import VideoItem
from pipeline.transcode import MediaError, Transcoded, pick_audio_stream, transcode
from tests.conftest import make_av_clip

WIDTH, HEIGHT = 160, 96
SETTINGS = EncodeSettings(
    short_side=64, crf=23, preset="ultrafast", mp3=False, mp3_bitrate=64_000, min_duration=2.5, threads=1
)
SILENT_ROW = float(np.log(np.finfo(float).eps))  # python_speech_features' log filterbank of exact silence


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg command line, failing loudly."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True, capture_output=True)


def audio_packets(path: Path) -> list[dict]:
    """Position, size and time of every audio packet, from ffprobe."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts_time,pos,size",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)["packets"]


def corrupt_audio_packets(src: Path, dst: Path, from_s: float, count: int, seed: int = 5) -> None:
    """Copy ``src`` with ``count`` consecutive audio packets from ``from_s`` on overwritten by random bytes."""
    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    chosen = [p for p in audio_packets(src) if float(p["pts_time"]) >= from_s][:count]
    assert len(chosen) == count
    for packet in chosen:
        position, size = int(packet["pos"]), int(packet["size"])
        data[position : position + size] = rng.randbytes(size)
    dst.write_bytes(bytes(data))


def overwrite_middle(src: Path, dst: Path, size: int, seed: int = 7) -> None:
    """Copy ``src`` with ``size`` random bytes written over its middle (what bit rot or a bad copy does)."""
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + size] = random.Random(seed).randbytes(size)
    dst.write_bytes(bytes(data))


def run(path: Path, keep_truncated: bool = False, mp3: bool = False) -> Transcoded:
    settings = EncodeSettings(**{**SETTINGS.__dict__, "keep_truncated": keep_truncated, "mp3": mp3})
    return transcode(VideoItem("clip", path, path.name, None, "train", 0), settings)


def joined_end_to_end(path: Path, video_start_s: float, frames: int, mp3: bool = False) -> np.ndarray:
    """The features as the ingest computed them before timestamps were used (the whole signal in memory):
    resampled frames joined end to end from the first one's time, cut or padded to the video, one logfbank."""
    collector = AudioCollector()
    with av.open(str(path)) as container:
        for frame in container.decode(pick_audio_stream(container)):
            collector.push(frame)
    signal = collector.finish()
    assert collector.start_s is not None
    needed = audio_samples_for(frames)
    offset = round((video_start_s - collector.start_s) * AUDIO_SAMPLE_RATE)
    lead = min(-offset, needed) if offset < 0 else 0
    body = signal[max(offset, 0) : max(offset, 0) + needed - lead]
    aligned = np.concatenate([np.zeros(lead), body, np.zeros(needed - lead - len(body))])
    if mp3:
        aligned = mp3_round_trip_in_one_piece(aligned)
    return logfbank(aligned, samplerate=AUDIO_SAMPLE_RATE, winlen=0.02, winstep=0.01, nfilt=40, nfft=1024).astype(
        np.float16
    )


def mp3_round_trip_in_one_piece(signal: np.ndarray) -> np.ndarray:
    """The MP3 round-trip as it was done on the whole signal at once."""
    import io

    pcm = np.clip(np.round(signal), -32768, 32767).astype(np.int16).reshape(1, -1)
    encoded = io.BytesIO()
    with av.open(encoded, "w", format="mp3") as muxer:
        stream = muxer.add_stream("libmp3lame", rate=AUDIO_SAMPLE_RATE, layout="mono")
        stream.bit_rate = SETTINGS.mp3_bitrate
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_SAMPLE_RATE, 0
        muxer.mux(stream.encode(frame))
        muxer.mux(stream.encode(None))
    encoded.seek(0)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
    with av.open(encoded) as demuxer:
        decoded = [
            out.to_ndarray().reshape(-1) for frame in demuxer.decode(audio=0) for out in resampler.resample(frame)
        ]
    joined = np.concatenate(decoded).astype(np.float64)[: len(signal)]
    return np.concatenate([joined, np.zeros(len(signal) - len(joined))])


def lag_rows(features: np.ndarray, reference: np.ndarray, rows: range) -> int:
    """The shift (feature rows) that best matches ``features[rows]`` to ``reference``: content at row r of
    ``features`` is at row r + lag of ``reference``."""
    mine = features[rows.start : rows.stop].astype(np.float32)
    ref = reference.astype(np.float32)
    lags = range(-min(150, rows.start), min(150, len(ref) - rows.stop) + 1)
    errors = [np.abs(mine - ref[rows.start + lag : rows.stop + lag]).mean() for lag in lags]
    return lags[int(np.argmin(errors))]


BEFORE = range(150, 390)  # 1.5-3.9 s: before every damage (each window holds 2 pitch changes)
AFTER = range(560, 800)  # 5.6-8.0 s: after it


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("audio_timing")
    ref = make_av_clip(work / "ref.mp4", 10.0, width=WIDTH, height=HEIGHT)
    made = {
        "ref": ref,
        "ref_44k_stereo": make_av_clip(
            work / "ref44.mp4", 6.0, width=WIDTH, height=HEIGHT, sample_rate=44100, channels=2, seed=3
        ),
    }
    made["ref_mkv"] = work / "ref.mkv"
    ffmpeg("-i", ref, "-c", "copy", made["ref_mkv"])
    made["gap"] = work / "gap.mkv"  # exactly the issue's reproduction
    ffmpeg("-i", ref, "-c:v", "copy", "-af", "aselect='not(between(t,4,5))'", "-c:a", "aac", made["gap"])
    made["aac16"] = work / "aac16.mp4"
    corrupt_audio_packets(ref, made["aac16"], from_s=4.0, count=16)
    made["garbage"] = work / "garbage.mp4"
    overwrite_middle(ref, made["garbage"], 20_000)
    return made


@pytest.fixture(scope="module")
def reference(clips: dict[str, Path]) -> Transcoded:
    return run(clips["ref"])


@pytest.mark.parametrize("name", ["ref", "ref_44k_stereo", "ref_mkv"])
def test_clean_clip_features_are_exactly_those_of_joining_the_frames_end_to_end(
    clips: dict[str, Path], name: str
) -> None:
    done = run(clips[name])
    meta = done.sample.meta
    expected = joined_end_to_end(clips[name], meta.source_start_s, meta.frames)
    assert np.array_equal(done.sample.fbank, expected)
    assert (done.facts.audio_gaps, done.facts.audio_overlaps, done.facts.lost_s) == (0, 0, 0.0)
    assert done.facts.audio_drift_ms < 1.0  # Matroska's 1-ms timestamps at most


def test_clean_clip_features_after_the_mp3_round_trip_are_unchanged(clips: dict[str, Path]) -> None:
    done = run(clips["ref"], mp3=True)
    meta = done.sample.meta
    assert meta.mp3
    assert np.array_equal(
        done.sample.fbank, joined_end_to_end(clips["ref"], meta.source_start_s, meta.frames, mp3=True)
    )


def test_gap_mkv_from_the_issue_is_placed_by_its_timestamps(clips: dict[str, Path], reference: Transcoded) -> None:
    done = run(clips["gap"])  # nothing undecodable: an ordinary ok sample, its gap recorded
    assert done.decode_errors == 0 and done.damage is None
    assert done.facts.audio_gaps == 1 and 0.95 <= done.facts.audio_gap_s <= 1.05 and done.facts.lost_s == 0
    assert (done.sample.meta.audio_gaps, done.sample.meta.audio_gap_s) == (1, done.facts.audio_gap_s)
    ref = reference.sample.fbank
    before, after = lag_rows(done.sample.fbank, ref, BEFORE), lag_rows(done.sample.fbank, ref, AFTER)
    assert abs(after - before) <= 1, (before, after)  # within one feature frame on both sides of the gap
    gap_rows = done.sample.fbank[420:490].astype(np.float32)  # inside 4-5 s (source), both clocks
    assert (gap_rows == np.float16(SILENT_ROW)).all()  # silence where the audio is missing
    assert ref[420:490].astype(np.float32).min() > 0  # the clean clip is loud there
    # what joining end to end did: the audio after the gap a second early (so this test can tell)
    meta = done.sample.meta
    joined = joined_end_to_end(clips["gap"], meta.source_start_s, meta.frames)
    assert abs(lag_rows(joined, ref, AFTER) - before - FEATURE_RATE) <= 5


def test_corrupt_aac_packets_fail_by_default_and_are_placed_when_kept(
    clips: dict[str, Path], reference: Transcoded
) -> None:
    with pytest.raises(MediaError) as failed:
        run(clips["aac16"])
    assert (failed.value.reason, failed.value.detail) == (
        "corrupt",
        "1.0 s lost mid-file to undecodable data (16 bad packets)",
    )
    done = run(clips["aac16"], keep_truncated=True)
    assert done.decode_errors == 16
    assert done.damage == "corrupt: 1.0 s lost mid-file to undecodable data (16 bad packets)"
    assert done.facts.lost_s == pytest.approx(16 * 1024 / AUDIO_SAMPLE_RATE)  # 16 AAC frames of 64 ms
    assert done.facts.audio_gaps == 1 and done.facts.audio_gap_s == pytest.approx(1.024)
    ref = reference.sample.fbank
    assert lag_rows(done.sample.fbank, ref, BEFORE) == 0 and lag_rows(done.sample.fbank, ref, AFTER) == 0
    assert np.array_equal(done.sample.fbank[:390], ref[:390])  # untouched before the damage (4 s on)
    assert np.array_equal(done.sample.fbank[530:], ref[530:])  # and identical again after it


def test_garbage_mid_file_is_placed_when_kept(clips: dict[str, Path], reference: Transcoded) -> None:
    with pytest.raises(MediaError) as failed:
        run(clips["garbage"])
    detail = re.fullmatch(r"(\d\.\d) s lost mid-file to undecodable data \((\d+) bad packets\)", failed.value.detail)
    assert failed.value.reason == "corrupt" and detail, failed.value.detail
    done = run(clips["garbage"], keep_truncated=True)
    assert done.decode_errors == int(detail.group(2)) and done.facts.lost_s == pytest.approx(
        float(detail.group(1)), abs=0.05
    )
    assert done.facts.audio_gaps >= 1 and done.facts.lost_s > 0.5
    ref = reference.sample.fbank
    assert lag_rows(done.sample.fbank, ref, BEFORE) == 0 and lag_rows(done.sample.fbank, ref, AFTER) == 0
    assert np.array_equal(done.sample.fbank[-200:], ref[-200:])  # the audio after the damage is where it was


@pytest.fixture(scope="module")
def joined_recordings(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 10-s clip as two 5-s MPEG-TS recordings joined with `cat`: the second one's clock 50,000 s ahead (a
    forward jump) or starting again where the first one did (a reset); and a Matroska file whose video
    timestamps jump 100 s ahead at 3 s (broken timestamps in a container without discontinuities)."""
    work = tmp_path_factory.mktemp("joined")
    ref = clips["ref"]
    first, ahead, again = work / "first.ts", work / "ahead.ts", work / "again.ts"
    ffmpeg("-i", ref, "-t", "5", "-c:v", "libx264", "-c:a", "aac", "-f", "mpegts", first)
    later = ["-ss", "5", "-i", ref, "-t", "5", "-c:v", "libx264", "-c:a", "aac"]
    ffmpeg(*later, "-output_ts_offset", "50000", "-f", "mpegts", ahead)
    ffmpeg(*later, "-f", "mpegts", again)
    made = {"forward": work / "forward.ts", "reset": work / "reset.ts", "hole": work / "hole.mkv"}
    made["forward"].write_bytes(first.read_bytes() + ahead.read_bytes())
    made["reset"].write_bytes(first.read_bytes() + again.read_bytes())
    hole = "setpts=PTS+if(gte(T\\,3)\\,100/TB\\,0)"
    ffmpeg("-i", ref, "-vf", hole, "-fps_mode", "passthrough", "-c:v", "libx264", "-c:a", "copy", made["hole"])
    return made


@pytest.mark.parametrize("name", ["forward", "reset"])
def test_joined_ts_recordings_are_rejoined_in_sync(
    joined_recordings: dict[str, Path], reference: Transcoded, name: str
) -> None:
    done = run(joined_recordings[name])  # before: 50,005 s of frozen video and silence, or the second half dropped
    assert done.facts.timestamp_jumps == 1 and done.sample.meta.timestamp_jumps == 1
    assert 9.9 <= done.sample.meta.duration_s <= 10.2  # the two recordings, one after the other
    ref = reference.sample.fbank
    before, after = lag_rows(done.sample.fbank, ref, BEFORE), lag_rows(done.sample.fbank, ref, AFTER)
    assert before == 0
    assert abs(after) <= 8, after  # within 2 video frames after the join (AAC priming and padding at the seam)


def test_a_long_hole_in_video_timestamps_fails_the_file(joined_recordings: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as failure:
        run(joined_recordings["hole"])
    assert failure.value.reason == "timestamp jump" and "jump 100.0 s ahead at 3." in failure.value.detail


def stored_luma_range(done: Transcoded) -> tuple[int, int]:
    """Lowest and highest luma of the stored video's first frame (the Y plane as stored, no conversion)."""
    import io

    with av.open(io.BytesIO(done.sample.video)) as container:
        frame = next(container.decode(video=0))
        luma = frame.to_ndarray()[: frame.height]
    return int(luma.min()), int(luma.max())


def test_full_range_video_is_stored_in_limited_range(tmp_path: Path) -> None:
    """Phones and MJPEG webcams write full-range video (yuvj420p). It was stored as decoded, 10-232, in an
    untagged file every player reads as limited range: too much contrast, clipped. Now it is converted, as the
    ffmpeg CLI does (24-218 there), and the same picture in limited range comes out unchanged."""
    picture = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3"]
    limited, full = tmp_path / "limited.mp4", tmp_path / "full.mp4"
    ffmpeg(*picture, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", limited)
    ffmpeg(*picture, "-vf", "scale=out_range=full", "-c:v", "libx264", "-pix_fmt", "yuvj420p", "-c:a", "aac", full)
    low, high = stored_luma_range(run(full))
    reference_low, reference_high = stored_luma_range(run(limited))
    assert low >= 16 and high <= 235, (low, high)
    assert abs(low - reference_low) <= 4 and abs(high - reference_high) <= 4, (low, high, reference_low, reference_high)


def test_non_square_pixels_keep_their_aspect_as_the_cli_does(tmp_path: Path) -> None:
    """A 720x480 DVD-style source with 32:27 pixels (16:9 on screen) was stored as 192x128 with no aspect tag,
    so it showed at 3:2. The stored file now carries the pixel aspect, as the ffmpeg CLI's scale gives it."""
    import io

    anamorphic = tmp_path / "anamorphic.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=720x480:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=3",
        "-vf",
        "setsar=32/27",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        anamorphic,
    )
    done = run(anamorphic)
    with av.open(io.BytesIO(done.sample.video)) as container:
        stream = container.streams.video[0]
        stored = (stream.codec_context.width, stream.codec_context.height, stream.sample_aspect_ratio)
    assert stored == (96, 64, Fraction(32, 27))  # SETTINGS' short side 64; 16:9 on screen


def test_a_picture_too_large_for_h264_fails_with_a_reason_that_names_its_size(tmp_path: Path) -> None:
    """An 8x4096 source at the default short side would be stored as 128x65536, which libx264 refuses: the
    file failed as "internal error" (ExternalError from avcodec_open2)."""
    tall = tmp_path / "tall.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=8x4096:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=3",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        tall,
    )
    settings = EncodeSettings(**{**SETTINGS.__dict__, "short_side": 128})
    with pytest.raises(MediaError) as failure:
        transcode(VideoItem("tall", tall, tall.name, None, "train", 0), settings)
    assert failure.value.reason == "unsupported size"
    assert failure.value.detail.startswith("8x4096 would be stored as 128x65536; H.264 takes at most 16384")
