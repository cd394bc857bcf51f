"""Probe input: any file PyAV reads → 16 kHz mono → K equally spaced 2-s log filterbank windows.

Audio is resampled exactly as `avts-ingest` does (PyAV's resampler to s16 mono 16 kHz) and the decoded frames are
joined end to end, which is the ingest's placement for a file with clean timestamps. Features are
:func:`pipeline.audio.log_filterbank`, the whole-signal reference the ingest's streaming filterbank is tested
equal to, stored as float16 like the shards: a probe window is what `avts-ingest` stores for the same audio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import av
import numpy as np

from avts.progress import CountProgress
from avts.schema import AUDIO_SAMPLE_RATE, FBANK_DTYPE, FBANK_WINDOW_S, FEATURE_RATE, SAMPLES_PER_FEATURE
from pipeline.audio import log_filterbank
from pipeline.transcode import MediaError, check_readable
from trainer.downstream.labeled_audio import LabeledFile, Skipped

SUBCLIP_S = 2
SUBCLIP_FRAMES = SUBCLIP_S * FEATURE_RATE  # 200 feature frames (10 ms step) per sub-clip
_FBANK_WINDOW_SAMPLES = round(FBANK_WINDOW_S * AUDIO_SAMPLE_RATE)
# Samples spanned by 200 feature frames: 199 steps of 10 ms plus one 20-ms window (2.01 s). Shorter audio is
# zero-padded at the end to this length.
WINDOW_SAMPLES = (SUBCLIP_FRAMES - 1) * SAMPLES_PER_FEATURE + _FBANK_WINDOW_SAMPLES


class DecodeError(Exception):
    """A file that gives no audio; the message is the reason shown to the user."""


def decode_mono_16k(path: Path) -> np.ndarray:
    """The file's default audio stream (FFmpeg's best) as 16 kHz mono, int16-scaled float64 samples.

    Works for any container PyAV reads (.wav, .ogg, .mp3, .flac, video files with audio). Raises
    :class:`DecodeError` when the file cannot be read (missing, empty, a pipe or device: the ingest's reasons),
    opened or decoded, has no audio stream, or no audio.
    """
    try:
        check_readable(path)
    except MediaError as error:
        raise DecodeError(str(error)) from None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.best("audio")
            if stream is None:
                raise DecodeError("no audio stream")
            chunks = _resample(cast(Iterator[av.AudioFrame], container.decode(stream)))
    except av.FFmpegError as error:
        raise DecodeError(f"cannot decode: {error}") from error
    if not sum(len(chunk) for chunk in chunks):
        raise DecodeError("no decodable audio")
    return np.concatenate(chunks).astype(np.float64)


def _resample(frames: Iterator[av.AudioFrame]) -> list[np.ndarray]:
    """Frames → 16 kHz mono s16 sample arrays joined end to end; a new resampler when the decoder output changes."""
    chunks: list[np.ndarray] = []
    resampler, source = None, None
    for frame in frames:
        layout = (frame.format.name, frame.layout.name, frame.sample_rate)
        if resampler is None or layout != source:
            chunks.extend(_drain(resampler))
            resampler, source = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE), layout
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    return chunks + _drain(resampler)


def _drain(resampler: av.AudioResampler | None) -> list[np.ndarray]:
    """What a resampler still holds (nothing without one)."""
    return [] if resampler is None else [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]


def feature_frames(n_samples: int) -> int:
    """Number of feature frames python_speech_features makes from ``n_samples`` (last frame zero-filled)."""
    if n_samples <= _FBANK_WINDOW_SAMPLES:
        return 1
    return 1 + -(-(n_samples - _FBANK_WINDOW_SAMPLES) // SAMPLES_PER_FEATURE)


def subclip_starts(n_samples: int, k: int) -> np.ndarray:
    """Start samples of ``k`` equally spaced 2-s sub-clips of a signal of ``n_samples`` samples.

    Starts fall on feature frames (multiples of 160 samples), so every sub-clip is a slice of the whole
    file's filterbank. For ``k >= 2`` the first sub-clip starts at 0 and the last one ends at the last
    feature frame, the others evenly in between (rounded to the nearest frame); ``k = 1`` takes the centre.
    A signal shorter than :data:`WINDOW_SAMPLES` is treated as padded to it (all starts are 0).
    """
    if k < 1:
        raise ValueError(f"need at least one sub-clip, got {k}")
    last = feature_frames(max(n_samples, WINDOW_SAMPLES)) - SUBCLIP_FRAMES
    # k >= 2: round(i * last / (k - 1)) with halves up, in integers
    frames = np.array([last // 2]) if k == 1 else (2 * np.arange(k) * last + (k - 1)) // (2 * (k - 1))
    return frames * SAMPLES_PER_FEATURE


def subclip_filterbanks(signal: np.ndarray, k: int) -> tuple[np.ndarray, bool]:
    """``k`` log filterbank windows ``(k, 200, 40)`` (float16, frames × filters as in the shards) and
    whether the signal had to be zero-padded to one 2-s window."""
    padded = len(signal) < WINDOW_SAMPLES
    if padded:
        signal = np.concatenate([signal, np.zeros(WINDOW_SAMPLES - len(signal))])
    fbank = log_filterbank(signal)
    windows = [fbank[start : start + SUBCLIP_FRAMES] for start in subclip_starts(len(signal), k) // SAMPLES_PER_FEATURE]
    return np.stack(windows).astype(FBANK_DTYPE), padded


@dataclass
class FeatureTable:
    """Per-file feature rows (one per sub-clip, or one per file) of the files that could be decoded."""

    features: np.ndarray  # (rows, ...) rows of all kept files, file after file
    file_index: np.ndarray  # (rows,) index into ``files`` of each row
    files: list[LabeledFile]  # the kept files
    skipped: list[Skipped]  # files that could not be decoded, with the reason
    padded: list[str]  # paths of files zero-padded to one 2-s window

    def with_features(self, features: np.ndarray) -> FeatureTable:
        """The same table with the rows replaced (same number, same order)."""
        if len(features) != len(self.file_index):
            raise ValueError(f"{len(features)} rows for a table of {len(self.file_index)}")
        return replace(self, features=features)


def decode_table(
    files: Sequence[LabeledFile], per_file: Callable[[np.ndarray], tuple[np.ndarray, bool]], progress: CountProgress
) -> FeatureTable:
    """Decode every file to 16 kHz mono and turn it into rows with ``per_file(signal) -> (rows, padded)``.

    A file that cannot be decoded is listed in ``skipped`` with the reason and counted as failed in
    ``progress``; the others go on.
    """
    rows: list[np.ndarray] = []
    kept: list[LabeledFile] = []
    skipped: list[Skipped] = []
    padded: list[str] = []
    for item in files:
        try:
            signal = decode_mono_16k(item.path)
        except DecodeError as error:
            skipped.append(Skipped(str(item.path), str(error)))
            progress.advance(1, failed=1)
            continue
        features, was_padded = per_file(signal)
        rows.append(features)
        kept.append(item)
        if was_padded:
            padded.append(str(item.path))
        progress.advance(1)
    if not rows:
        return FeatureTable(np.zeros((0,)), np.zeros(0, dtype=np.int64), [], skipped, padded)
    file_index = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in enumerate(rows)])
    return FeatureTable(np.concatenate(rows), file_index, kept, skipped, padded)
