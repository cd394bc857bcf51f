"""avts-ingest on the real clips with 2 Ray workers: every sample, the stats and the manifests are checked."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import webdataset as wds
from python_speech_features import logfbank

from avts.schema import FEATURES_PER_FRAME, VIDEO_FPS, audio_samples_for, decode_sample
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def ingested(real_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ingest the real clips once with 2 local Ray workers; returns the folder holding shards/ and manifests/."""
    root = tmp_path_factory.mktemp("real")
    result = run_cli(
        "pipeline.cli",
        "--src",
        str(real_clips),
        "--out",
        str(root / "shards"),
        "--workers",
        "2",
        "--shard-size",
        "3",
        "--val-fraction",
        "0.2",
        "--engine",
        "ray",
    )
    assert result.returncode == 0, result.stderr
    assert "avts-ingest summary" in result.stderr
    return root


def samples(root: Path) -> list:
    """Every sample of every shard, decoded through the shard schema."""
    shards = sorted((root / "shards").glob("*.tar"))
    return [decode_sample(raw) for raw in wds.WebDataset([str(s) for s in shards], shardshuffle=False)]


def source_duration(path: Path) -> float:
    """Duration of the best video stream, from decoding every frame's timestamp (independent of the ingest)."""
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        times = [frame.time for frame in container.decode(stream)]
    step = (times[-1] - times[0]) / max(len(times) - 1, 1)
    return times[-1] - times[0] + step


def cli_decoded_audio(path: Path, index: int) -> tuple[np.ndarray, float]:
    """16 kHz mono audio of stream ``index`` decoded by the ffmpeg command line, and the time of its first sample."""
    with av.open(str(path)) as container:
        stream = container.streams[index]
        first = next(container.decode(stream)).time
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:{index}",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float64), float(first)


def test_every_sample_has_25fps_video_and_aligned_features(ingested: Path, real_clips: Path) -> None:
    found = samples(ingested)
    assert len(found) >= 6
    for sample in found:
        meta = sample.meta
        with av.open(io.BytesIO(sample.video)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            assert stream.average_rate == VIDEO_FPS
            assert min(stream.width, stream.height) == 128
        assert frames == meta.frames
        expected = source_duration(real_clips / meta.source) * VIDEO_FPS
        assert abs(frames - expected) <= 2, (meta.source, frames, expected)
        assert sample.fbank.shape == (FEATURES_PER_FRAME * frames, 40)
        assert abs(len(sample.fbank) - 100 * meta.duration_s) < 1


def test_features_equal_python_speech_features_on_the_same_audio(ingested: Path, real_clips: Path) -> None:
    for sample in samples(ingested):
        signal, first_sample_time = cli_decoded_audio(real_clips / sample.meta.source, sample.meta.audio_stream)
        offset = round((sample.meta.source_start_s - first_sample_time) * 16000)
        needed = audio_samples_for(sample.meta.frames)
        aligned = np.zeros(needed)
        piece = signal[max(offset, 0) : max(offset, 0) + needed - max(-offset, 0)]
        aligned[max(-offset, 0) : max(-offset, 0) + len(piece)] = piece
        direct = logfbank(aligned, samplerate=16000, winlen=0.02, winstep=0.01, nfilt=40, nfft=1024)
        stored = sample.fbank.astype(np.float64)
        assert stored.shape == direct.shape
        close = np.abs(stored - direct) <= 0.02 + 2e-3 * np.abs(direct)  # float16 storage
        assert close.mean() > 0.99, (sample.meta.source, close.mean())


def test_stats_match_a_direct_recomputation_over_the_chosen_subset(ingested: Path) -> None:
    videos = pd.read_parquet(ingested / "manifests" / "videos.parquet")
    stats = json.loads((ingested / "manifests" / "stats.json").read_text())
    ingested_train = videos[(videos.split == "train") & (videos.status == "ok")]
    chosen = set(videos[videos.in_stats_subset].key)
    assert chosen <= set(ingested_train.key)
    assert len(chosen) == max(1, round(0.2 * len(ingested_train)))
    ranks = ingested_train.set_index("key").stats_rank
    assert max(ranks[list(chosen)]) < min(ranks.drop(list(chosen)), default=10**9)  # the first in seeded order
    used = [s for s in samples(ingested) if s.key in chosen]
    assert used and stats["videos"] == len(used)
    frames = np.concatenate([s.fbank.astype(np.float64) for s in used])
    assert stats["frames"] == len(frames)
    np.testing.assert_allclose(stats["mean"], frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], frames.std(axis=0), rtol=1e-5)


def test_manifests_agree_with_the_shards(ingested: Path, real_clips: Path) -> None:
    videos = pd.read_parquet(ingested / "manifests" / "videos.parquet")
    shards = pd.read_parquet(ingested / "manifests" / "shards.parquet")
    inputs = sorted(p.name for p in real_clips.iterdir() if p.is_file() and not p.name.startswith("."))
    assert sorted(videos.path) == inputs  # one row per input file, README included
    assert set(videos.status) <= {"ok", "failed"}
    by_shard = {}
    for row in shards.itertuples():
        path = ingested / "shards" / row.shard
        assert path.stat().st_size == row.bytes
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256
        with tarfile.open(path) as tar:
            names = tar.getnames()
        keys = sorted({name.split(".", 1)[0] for name in names})
        assert len(names) == 3 * len(keys) == 3 * row.samples
        by_shard[row.shard] = keys
        assert row.shard.startswith("val-") == (row.split == "val")
    ok = videos[videos.status == "ok"]
    for row in ok.itertuples():
        assert row.key in by_shard[row.shard]
        assert row.duration_s > 2.5 and row.has_audio
    assert sum(len(keys) for keys in by_shard.values()) == len(ok)
    failed = videos[videos.status == "failed"].set_index("path")
    assert failed.loc["README.md", "reason"].startswith("not a media file")
    assert failed.loc["imageio_test.webm", "reason"] == "no audio stream"
    assert failed.loc["imageio_cockatoo.mp4", "reason"].startswith("silent audio")
    assert failed.loc["openl3_bento.mp4", "reason"].startswith("too short")
    assert (failed.shard.isna()).all()
