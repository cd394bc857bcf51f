"""The shard format: the one contract between `avts-ingest` (writer) and `avts-train` (reader).

A shard is a plain WebDataset tar. Each sample is three members sharing one key:

``<key>.mp4``
    The video, resampled to a constant 25 fps and resized so that its short side is ``short_side`` pixels,
    H.264 (yuv420p) in an MP4 container with a fixed GOP of 25 frames (one key frame per second), so a
    reader decodes any 1-second window from at most one key frame back. Frame ``k`` shows time ``k / 25`` s.
``<key>.fbank.npy``
    Log filterbank energies of the audio, float16, shape ``(4 * frames, 40)``. Audio is 16 kHz mono;
    feature frame ``i`` covers the audio interval ``[i * 10 ms, i * 10 ms + 20 ms)`` on the same clock as the
    video (time 0 is the first video frame), so video frame ``k`` starts at feature frame ``4 * k`` and a
    1-second clip starting at frame ``k`` lines up with feature frames ``[4k, 4k + 100)``.
``<key>.json``
    :class:`SampleMeta`: where the sample came from and what it holds.

Train shards are named ``0000.tar, 0001.tar, ...``, validation shards ``val-0000.tar, ...`` and, when official
split files decide the split (UCF101, HMDB51), test shards ``test-0000.tar, ...``.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

VIDEO_FPS = 25
GOP_FRAMES = 25
AUDIO_SAMPLE_RATE = 16_000
FEATURE_RATE = 100  # feature frames per second
FEATURES_PER_FRAME = FEATURE_RATE // VIDEO_FPS  # 4 feature frames per video frame
SAMPLES_PER_FEATURE = AUDIO_SAMPLE_RATE // FEATURE_RATE  # 160 audio samples per feature step

FBANK_WINDOW_S = 0.02
FBANK_STEP_S = 0.01
FBANK_NFFT = 1024
FBANK_FILTERS = 40
FBANK_DTYPE = np.float16

VIDEO_EXT = "mp4"
FBANK_EXT = "fbank.npy"
META_EXT = "json"
SAMPLE_EXTS = (VIDEO_EXT, FBANK_EXT, META_EXT)

TRAIN = "train"
VAL = "val"
TEST = "test"


@dataclass(frozen=True)
class SampleMeta:
    """Per-sample metadata stored as ``<key>.json``."""

    key: str
    source: str  # path relative to the ingest source folder
    label: str | None  # first folder level under the source, or None
    duration_s: float  # duration of the stored 25 fps video: frames / 25
    source_start_s: float  # source timestamp shown by stored frame 0 (time 0 of video and features)
    frames: int  # frames in the stored video
    fps: float  # frame rate of the source video (average)
    width: int  # source width, after rotation
    height: int  # source height, after rotation
    stored_width: int
    stored_height: int
    audio_sample_rate: int  # sample rate of the source audio
    audio_channels: int
    audio_pad_s: float  # seconds of silence added where the source audio did not cover the video
    mp3: bool  # whether the audio went through an MP3 round-trip before features
    schema_version: int = SCHEMA_VERSION
    # written since the audio is placed by its timestamps (absent from older samples: these defaults)
    audio_stream: int | None = None  # container index of the source audio stream used
    audio_gaps: int = 0  # silences inserted mid-file where the source audio timestamps jump forward
    audio_gap_s: float = 0.0
    audio_overlaps: int = 0  # places where the timestamps went back: the repeated audio was dropped
    audio_overlap_s: float = 0.0
    audio_drift_ms: float = 0.0  # largest distance between audio and its timestamps left as jitter (< 1 frame)
    truncated: bool = False  # kept although the file ends before its declared duration (--keep-truncated)
    lost_s: float = 0.0  # media lost mid-file to undecodable data
    audible: bool = True  # False: no audio stream or only silence (kept for video-only use); features are silence
    timestamp_jumps: int = 0  # discontinuities of a joined recording (MPEG-TS) rejoined, as the ffmpeg CLI does

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleMeta:
        """Build from a decoded JSON dict, ignoring fields a newer writer may have added."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Sample:
    """One decoded shard sample: the encoded video, its audio features and metadata."""

    key: str
    video: bytes
    fbank: np.ndarray
    meta: SampleMeta


def train_shard_name(index: int) -> str:
    """File name of the ``index``-th training shard."""
    return f"{index:04d}.tar"


def val_shard_name(index: int) -> str:
    """File name of the ``index``-th validation shard."""
    return f"val-{index:04d}.tar"


def test_shard_name(index: int) -> str:
    """File name of the ``index``-th test shard (split files only)."""
    return f"test-{index:04d}.tar"


def shard_name(split: str, index: int) -> str:
    """File name of a shard of ``split`` (``train``, ``val`` or ``test``)."""
    if split == TEST:
        return test_shard_name(index)
    return train_shard_name(index) if split == TRAIN else val_shard_name(index)


def feature_frames_for(frames: int) -> int:
    """Number of feature frames stored with a video of ``frames`` frames."""
    return FEATURES_PER_FRAME * frames


def audio_samples_for(frames: int) -> int:
    """Audio samples (16 kHz) needed to compute exactly ``feature_frames_for(frames)`` windows."""
    window = round(FBANK_WINDOW_S * AUDIO_SAMPLE_RATE)
    return (feature_frames_for(frames) - 1) * SAMPLES_PER_FEATURE + window


def encode_sample(sample: Sample) -> dict[str, Any]:
    """Turn a :class:`Sample` into the member dict a ``webdataset.TarWriter`` writes."""
    fbank = np.ascontiguousarray(sample.fbank, dtype=FBANK_DTYPE)
    buffer = io.BytesIO()
    np.save(buffer, fbank, allow_pickle=False)
    return {
        "__key__": sample.key,
        VIDEO_EXT: sample.video,
        FBANK_EXT: buffer.getvalue(),
        META_EXT: json.dumps(asdict(sample.meta), sort_keys=True, ensure_ascii=False).encode("utf-8"),
    }


def decode_sample(raw: dict[str, Any]) -> Sample:
    """Turn the raw member dict that webdataset yields for one key back into a :class:`Sample`."""
    missing = [ext for ext in SAMPLE_EXTS if ext not in raw]
    if missing:
        raise KeyError(f"sample {raw.get('__key__')!r} lacks members {missing}")
    meta = SampleMeta.from_dict(json.loads(raw[META_EXT]))
    if meta.schema_version > SCHEMA_VERSION:  # its fields may mean what this reader cannot know
        raise ValueError(f"written with shard schema {meta.schema_version}; this AVTS reads up to {SCHEMA_VERSION}")
    fbank = np.load(io.BytesIO(raw[FBANK_EXT]), allow_pickle=False)
    return Sample(key=raw["__key__"], video=raw[VIDEO_EXT], fbank=fbank, meta=meta)
