"""Audio subsampler: decoded source frames in, log filterbank features on the video clock out, streamed.

The audio flows through small stages as it is decoded, so memory does not grow with the video's length::

    AudioTrack.push(frame) → AudioResampler (16 kHz mono s16) → AudioTimeline (each resampled frame at its
    timestamp) → VideoClockWindow (sample 0 = first stored video frame; releases only what the frames encoded so
    far need) → level meter → [Mp3RoundTrip] → StreamingFilterbank (python_speech_features' ``logfbank``, block
    by block)

Placement by timestamps. The timeline is a 16 kHz sample grid whose 0 is the first resampled sample. A resampled
frame belongs at ``round(pts · time_base · 16000)`` minus the grid origin (the resampler's output timestamps
already account for its own delay). It is written where the previous frame ended unless its timestamp says
otherwise by more than the timestamps' own uncertainty: a jump forward becomes silence (a *gap*), a jump back drops
the audio that would land on audio already placed (an *overlap*). The uncertainty is one feature step (160 samples,
10 ms) right after undecodable audio packets, so audio after a loss is placed within one feature frame; elsewhere
it is 95% of the longest source frame seen, at least one feature step, because containers and codecs stamp frames
up to almost a frame off their decoded samples on clean files (Matroska rounds to 1 ms; Vorbis in WebM stamps its
long blocks ~20 ms off, for seconds on end) while a lost or skipped packet moves the timestamps by a whole frame.
Smaller differences are absorbed as jitter; the largest one absorbed is the *drift* (how far placed audio may be
from its timestamps). A frame without a timestamp is placed right after the previous one, unless audio was lost
just before it: then its place is unknown and :class:`AudioTimingError` is raised. For a file without gaps this
gives exactly the samples of joining the frames end to end.

The features are python_speech_features' ``logfbank`` (:func:`log_filterbank`). The ingest computes them with that
function's own arithmetic in numpy (:func:`preemphasis`, :func:`mel_filters`, :func:`_filterbank_block`), bit for
bit the same rows (tested against python_speech_features), without importing python_speech_features: it imports
scipy, 0.18 s of every ingest worker's start.
"""

from __future__ import annotations

import functools
import io
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from avts.schema import (
    AUDIO_SAMPLE_RATE,
    FBANK_DTYPE,
    FBANK_FILTERS,
    FBANK_NFFT,
    FBANK_STEP_S,
    FBANK_WINDOW_S,
    SAMPLES_PER_FEATURE,
    audio_samples_for,
)

PREEMPHASIS = 0.97  # python_speech_features' default, as used by logfbank before streaming
WINDOW_SAMPLES = round(FBANK_WINDOW_S * AUDIO_SAMPLE_RATE)  # 320
JITTER_SAMPLES = SAMPLES_PER_FEATURE  # timestamps are trusted to one feature step (10 ms) after lost packets...
FRAME_JITTER = 0.95  # ... and elsewhere to this share of the longest source frame (see the module doc)
BLOCK_ROWS = 500  # feature rows per filterbank call (5 s of audio, ~10 MB of intermediate arrays)
SILENCE_CHUNK = 10 * AUDIO_SAMPLE_RATE  # silence is materialized at most this many samples at a time
RELEASE_SAMPLES = AUDIO_SAMPLE_RATE  # the window hands on audio 1 s at a time (bar the end), not frame by frame

Sink = Callable[[np.ndarray], None]


class AudioTimingError(ValueError):
    """Audio that cannot be placed on the clock within one feature frame."""


@dataclass
class AudioTiming:
    """How the decoded audio was placed (in 16 kHz samples); restricted to the stored window by :meth:`within`."""

    gaps: list[tuple[int, int]] = field(default_factory=list)  # (grid start, length) of silences inserted
    overlaps: list[tuple[int, int]] = field(default_factory=list)  # (grid start, length) of audio dropped
    max_drift: int = 0  # largest |timestamp position − placed position| absorbed as jitter
    untimed_frames: int = 0  # frames without a timestamp, placed right after the previous one

    def within(self, start: int, end: int) -> AudioTiming:
        """The gaps and overlaps that fall in grid samples ``[start, end)``, cut to it."""

        def cut(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
            kept = [(max(s, start), min(s + n, end) - max(s, start)) for s, n in spans]
            return [(s, n) for s, n in kept if n > 0]

        return AudioTiming(cut(self.gaps), cut(self.overlaps), self.max_drift, self.untimed_frames)

    @property
    def gap_samples(self) -> int:
        """Samples of silence inserted mid-file."""
        return sum(n for _, n in self.gaps)

    @property
    def overlap_samples(self) -> int:
        """Samples of audio dropped because their timestamps went back over audio already placed."""
        return sum(n for _, n in self.overlaps)


class StreamingFilterbank:
    """Log filterbank energies of a signal pushed in pieces, equal to one ``logfbank`` call on the whole signal.

    ``logfbank``'s arithmetic does the work: :func:`preemphasis` on what has arrived once a block's worth has,
    with the previous samples' last one carried over (so the emphasized signal is the one of the whole; pieces are
    only collected meanwhile, since one call per decoded frame cost more than the filterbank), then ``logfbank``
    without emphasis (its arithmetic, less the work it throws away: :func:`_filterbank_block`) on blocks of
    :data:`BLOCK_ROWS` whole windows on the global 160-sample grid, the last block zero-padded to the same size
    (the padded rows are dropped). Every filterbank product thus has the same shape; numpy's FFT works row by row
    and OpenBLAS gives a row the same bits in any product of more than ~30 rows (its small-matrix kernel rounds
    differently below that), so the rows equal those of one call on the whole signal, bit for bit (tested in
    ``tests/test_audio.py`` for 2.5 s and longer, the shortest video kept by default).
    """

    def __init__(self, dtype: type = FBANK_DTYPE) -> None:
        self._dtype = dtype  # of the rows kept (the stored features are float16; float64 shows the exact values)
        self._last_sample: float | None = None  # the preemphasis of the next piece's first sample needs it
        self._raw: list[np.ndarray] = []  # pushed samples not emphasized yet
        self._raw_samples = 0
        self._pending = np.zeros(0)  # emphasized samples from the first window not yet computed
        self._rows: list[np.ndarray] = []

    def push(self, signal: np.ndarray) -> None:
        """Feed the next samples (int16-scaled floats)."""
        if len(signal) == 0:
            return
        self._raw.append(signal)
        self._raw_samples += len(signal)
        block_samples = (BLOCK_ROWS - 1) * SAMPLES_PER_FEATURE + WINDOW_SAMPLES
        if len(self._pending) + self._raw_samples >= block_samples:
            pending = self._emphasized()
            done = 0
            while len(pending) - done >= block_samples:
                self._rows.append(_filterbank_block(pending[done : done + block_samples]).astype(self._dtype))
                done += BLOCK_ROWS * SAMPLES_PER_FEATURE
            self._pending = pending[done:]

    def _emphasized(self) -> np.ndarray:
        """The pending emphasized samples followed by the raw ones, emphasized now."""
        if not self._raw:
            return self._pending
        raw = np.concatenate(self._raw)
        if self._last_sample is None:
            emphasized = preemphasis(raw)
        else:
            emphasized = preemphasis(np.concatenate(([self._last_sample], raw)))[1:]
        self._last_sample = float(raw[-1])
        self._raw, self._raw_samples = [], 0
        return np.concatenate((self._pending, emphasized))

    def finish(self) -> np.ndarray:
        """The rows of every whole window pushed, shape ``(rows, FBANK_FILTERS)``."""
        pending = self._emphasized()
        rows = (len(pending) - WINDOW_SAMPLES) // SAMPLES_PER_FEATURE + 1 if len(pending) >= WINDOW_SAMPLES else 0
        if rows:
            block_samples = (BLOCK_ROWS - 1) * SAMPLES_PER_FEATURE + WINDOW_SAMPLES
            padded = np.concatenate((pending, np.zeros(block_samples - len(pending))))
            self._rows.append(_filterbank_block(padded)[:rows].astype(self._dtype))
        self._pending = np.zeros(0)
        if not self._rows:
            return np.zeros((0, FBANK_FILTERS), self._dtype)
        return np.concatenate(self._rows)


def preemphasis(signal: np.ndarray) -> np.ndarray:
    """``y[0] = x[0]``, ``y[n] = x[n] − 0.97·x[n−1]``, as python_speech_features' ``sigproc.preemphasis``."""
    return np.append(signal[0], signal[1:] - PREEMPHASIS * signal[:-1])


@functools.cache
def mel_filters() -> np.ndarray:
    """The 40 triangular filters over the 513 FFT bins, as python_speech_features' ``get_filterbanks`` makes them
    for our settings (0–8 kHz; ``logfbank`` builds them again on every call): the edges are evenly spaced in mels
    (``2595·log10(1 + hz/700)``), rounded down to FFT bins, and each triangle rises from 0 at its low edge to 1 at
    its peak bin and falls to 0 at its high edge, computed in the same order (the same bits)."""
    top_mel = 2595 * np.log10(1 + AUDIO_SAMPLE_RATE / 2 / 700.0)
    mels = np.linspace(0.0, top_mel, FBANK_FILTERS + 2)
    edges = np.floor((FBANK_NFFT + 1) * (700 * (10 ** (mels / 2595.0) - 1)) / AUDIO_SAMPLE_RATE)
    filters = np.zeros((FBANK_FILTERS, FBANK_NFFT // 2 + 1))
    for row, (low, peak, high) in enumerate(zip(edges[:-2], edges[1:-1], edges[2:], strict=True)):
        rising, falling = np.arange(int(low), int(peak)), np.arange(int(peak), int(high))
        filters[row, rising] = (rising - low) / (peak - low)
        filters[row, falling] = (high - falling) / (high - peak)
    return filters


def _filterbank_block(emphasized: np.ndarray) -> np.ndarray:
    """``logfbank(emphasized, preemph=0)`` at our settings for a signal of whole windows, step by step as it computes
    it (the power spectrum ``|rfft|² / 1024``, the filterbank product, zeros floored at machine epsilon, ``log``),
    less the work whose result it throws away: the windows are a strided view rather than a gathered copy multiplied
    by a window of ones, the filterbank is built once, and the per-frame energy is not summed. Bit for bit the same
    rows (tested in ``tests/test_audio.py`` against ``logfbank``)."""
    frames = sliding_window_view(emphasized, WINDOW_SAMPLES)[::SAMPLES_PER_FEATURE]
    power = 1.0 / FBANK_NFFT * np.square(np.absolute(np.fft.rfft(frames, FBANK_NFFT)))
    energies = np.dot(power, mel_filters().T)
    return np.log(np.where(energies == 0, np.finfo(float).eps, energies))


class AudioCollector:
    """The whole decoded signal in memory, frames joined end to end (timestamps after the first frame ignored).

    For tools that want a short clip's entire signal (the map-style baseline of ``benchmarks/train_bench.py``, the
    reference of the tests); the ingest itself streams and places audio by its timestamps (:class:`AudioTrack`).
    """

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self.start_s: float | None = None  # source time of the first frame

    def push(self, frame: av.AudioFrame) -> None:
        """Feed one decoded source audio frame (frames before the first with a timestamp are skipped)."""
        if self.start_s is None:
            if frame.time is None:
                return
            self.start_s = float(frame.time)
        for out in self._resampler.resample(frame):
            self._chunks.append(out.to_ndarray().reshape(-1))

    def finish(self) -> np.ndarray:
        """Flush the resampler and return the whole 16 kHz mono signal (int16 values as float64)."""
        for out in self._resampler.resample(None):
            self._chunks.append(out.to_ndarray().reshape(-1))
        if not self._chunks:
            return np.zeros(0)
        return np.concatenate(self._chunks).astype(np.float64)


def log_filterbank(signal: np.ndarray) -> np.ndarray:
    """Log filterbank energies (window 0.02 s, step 0.01 s, FFT 1024, 40 filters) of a whole signal, float64.

    The definition of the stored features, and the reference the streaming path (:class:`StreamingFilterbank`) is
    tested against.
    """
    from python_speech_features import logfbank  # here: see the module's docstring

    return logfbank(
        signal,
        samplerate=AUDIO_SAMPLE_RATE,
        winlen=FBANK_WINDOW_S,
        winstep=FBANK_STEP_S,
        nfilt=FBANK_FILTERS,
        nfft=FBANK_NFFT,
        preemph=PREEMPHASIS,
    )


@functools.cache
def silent_features() -> np.ndarray:
    """One feature row of digital silence (python_speech_features floors zero energy at machine epsilon)."""
    return _filterbank_block(np.zeros(WINDOW_SAMPLES))[0]


class Mp3RoundTrip:
    """MP3 encode and decode of the 16 kHz mono signal (Chung & Zisserman's audio path), streamed.

    Pushed samples are encoded as they come (only the MP3 bytes, ~8 KB/s, are kept); :meth:`finish` decodes them and
    hands exactly as many samples as were pushed to ``sink``, with the same alignment: the encoder and decoder
    delays are removed by ffmpeg through the LAME/Xing header.
    """

    def __init__(self, bitrate: int, sink: Sink) -> None:
        self._sink = sink
        self._encoded = io.BytesIO()
        self._muxer = av.open(self._encoded, "w", format="mp3")
        self._stream = self._muxer.add_stream("libmp3lame", rate=AUDIO_SAMPLE_RATE, layout="mono")
        self._stream.bit_rate = bitrate
        self._samples = 0

    def push(self, signal: np.ndarray) -> None:
        """Encode the next samples."""
        if len(signal) == 0:
            return
        pcm = np.clip(np.round(signal), -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = self._samples
        self._samples += len(signal)
        self._muxer.mux(self._stream.encode(frame))

    def finish(self) -> None:
        """Flush the encoder, decode the MP3 and hand the first ``pushed`` samples to the sink (zeros if short)."""
        self._muxer.mux(self._stream.encode(None))
        self._muxer.close()
        self._encoded.seek(0)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
        left = self._samples
        with av.open(self._encoded, "r") as demuxer:
            for decoded in demuxer.decode(audio=0):
                for out in resampler.resample(decoded):
                    left -= self._emit(out, left)
        for out in resampler.resample(None):
            left -= self._emit(out, left)
        _emit_silence(self._sink, left)

    def _emit(self, frame: av.AudioFrame, left: int) -> int:
        samples = frame.to_ndarray().reshape(-1)[:left].astype(np.float64)
        self._sink(samples)
        return len(samples)


def _emit_silence(sink: Sink, samples: int) -> None:
    while samples > 0:
        chunk = min(samples, SILENCE_CHUNK)
        sink(np.zeros(chunk))
        samples -= chunk


class VideoClockWindow:
    """Moves the timeline's samples onto the video clock: aligned sample ``k`` is grid sample ``k + offset``.

    Samples wait until the offset is known (the first video frame's time) and then until the video frames
    encoded so far need them (:meth:`release_until`), so nothing past the stored video is ever processed; what
    waits is bounded by how far the file interleaves audio ahead of video, plus :data:`RELEASE_SAMPLES`: samples
    are handed on in pieces of at least that many (the last one excepted), since every piece costs the stages
    after it a few Python calls, which per source frame were ~3% of a video's ingest.
    """

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._waiting: deque[np.ndarray | int] = deque()  # grid samples, or an int: that many samples of silence
        self._waiting_samples = 0
        self.offset: int | None = None
        self._skip = 0  # grid samples still to drop before aligned sample 0
        self.lead = 0  # silence before the first audio sample (audio starting after the first video frame)
        self.released = 0
        self._limit = 0

    def push(self, samples: np.ndarray | int) -> None:
        """Append grid samples (an array) or that many samples of silence (an int)."""
        self._waiting.append(samples)
        self._waiting_samples += samples if isinstance(samples, int) else len(samples)
        self._drain()

    def start(self, offset: int) -> None:
        """Set where the first video frame sits on the grid."""
        self.offset = offset
        if offset >= 0:
            self._skip = offset
        else:
            self.lead = -offset
            self._waiting.appendleft(-offset)
            self._waiting_samples += -offset
        self._drain()

    def release_until(self, limit: int) -> None:
        """Let aligned samples ``[0, limit)`` through to the sink."""
        self._limit = max(self._limit, limit)
        self._drain()

    def flush(self) -> None:
        """Hand on all that may be released now, however little."""
        self._drain(final=True)

    def finish(self, needed: int) -> int:
        """Release exactly ``needed`` aligned samples (silence past the audio); returns the padding at the ends."""
        self._limit = max(self._limit, needed)
        self.flush()
        tail = needed - self.released
        _emit_silence(self._sink, tail)
        self.released = needed
        self._waiting.clear()
        return min(self.lead, needed) + tail

    def _drain(self, final: bool = False) -> None:
        """Drop the samples before aligned sample 0; hand on all that may be released once that is at least
        :data:`RELEASE_SAMPLES` (anything, when ``final``), in pieces of at most :data:`SILENCE_CHUNK`."""
        if self.offset is None:
            return
        releasable = min(self._waiting_samples - self._skip, self._limit - self.released)
        if not final and releasable < RELEASE_SAMPLES and self._skip == 0:
            return
        pieces: list[np.ndarray] = []
        gathered = 0
        while self._waiting and (self._skip > 0 or self.released < self._limit):
            item = self._waiting.popleft()
            size = item if isinstance(item, int) else len(item)
            if self._skip > 0:
                used = min(size, self._skip)
                self._skip -= used
            else:
                used = min(size, self._limit - self.released, SILENCE_CHUNK - gathered)
                pieces.append(np.zeros(used, np.int16) if isinstance(item, int) else item[:used])
                gathered += used
                self.released += used
            self._waiting_samples -= used
            if used < size:
                self._waiting.appendleft(size - used if isinstance(item, int) else item[used:])
            if gathered >= SILENCE_CHUNK:
                self._sink(np.concatenate(pieces).astype(np.float64))
                pieces, gathered = [], 0
        if pieces:
            self._sink(np.concatenate(pieces).astype(np.float64))


class AudioTimeline:
    """Places resampled frames at their timestamps on a 16 kHz grid whose 0 is the first frame (see module doc)."""

    def __init__(self, window: VideoClockWindow) -> None:
        self._window = window
        self.timing = AudioTiming()
        self._origin: int | None = None  # timestamp position of grid sample 0
        self._cursor = 0  # grid index where the next frame goes if it is on time
        self._longest_frame = 0  # longest source frame seen, in 16 kHz samples

    @property
    def started(self) -> bool:
        """Whether any audio was placed."""
        return self._origin is not None

    def place(self, samples: np.ndarray, position: int | None, after_loss: bool, source_frame: int) -> None:
        """Put ``samples`` at timestamp position ``position`` (16 kHz samples; None: no timestamp).

        ``after_loss``: audio packets were lost (undecodable) just before this frame; ``source_frame``: the length of
        the source frame it came from, in 16 kHz samples.
        """
        if self._origin is None:
            self._origin = position if position is not None else 0
        self._longest_frame = max(self._longest_frame, source_frame)
        if position is None:
            if after_loss:
                raise AudioTimingError("audio after undecodable packets has no timestamps")
            self.timing.untimed_frames += 1
            target = self._cursor
        else:
            target = position - self._origin
        shift = target - self._cursor
        tolerance = JITTER_SAMPLES if after_loss else max(JITTER_SAMPLES, int(FRAME_JITTER * self._longest_frame))
        if shift >= tolerance:
            self.timing.gaps.append((self._cursor, shift))
            self._window.push(shift)
            self._cursor += shift
        elif shift <= -tolerance:
            dropped = min(-shift, len(samples))
            self.timing.overlaps.append((target, dropped))
            samples = samples[dropped:]
        else:
            self.timing.max_drift = max(self.timing.max_drift, abs(shift))
        if len(samples):
            self._window.push(samples)
            self._cursor += len(samples)


@dataclass(frozen=True)
class AudioResult:
    """The features of the stored window and what was learned on the way."""

    fbank: np.ndarray  # float16 (4 · frames, 40)
    start_s: float  # source time of the first decoded audio frame
    pad_samples: int  # silence added at the ends, where the audio did not cover the video
    level_dbfs: float  # RMS level of the window before any MP3 round-trip
    timing: AudioTiming  # gaps and overlaps within the window

    @property
    def covered_samples(self) -> int:
        """Samples of the window that hold source audio (not padding, not inserted silence)."""
        return len(self.fbank) * SAMPLES_PER_FEATURE + SAMPLES_PER_FEATURE - self.pad_samples - self.timing.gap_samples


class AudioTrack:
    """Decoded source audio frames in, features of the stored window out; see the module doc for the stages.

    Call :meth:`push` for each decoded frame, :meth:`video_progress` whenever the stored video grows, then
    :meth:`finish` with the stored frame count.
    """

    def __init__(self, mp3_bitrate: int | None = None) -> None:
        self._features = StreamingFilterbank()
        self._mp3 = Mp3RoundTrip(mp3_bitrate, self._features.push) if mp3_bitrate else None
        self._window = VideoClockWindow(self._measure)
        self._timeline = AudioTimeline(self._window)
        self._resampler: av.AudioResampler | None = None
        self._source_format: tuple[str, str, int] | None = None
        self._squares = 0.0
        self._video_start_s: float | None = None
        self.start_s: float | None = None

    @property
    def started(self) -> bool:
        """Whether any audio was decoded and placed."""
        return self._timeline.started

    def push(self, frame: av.AudioFrame, after_loss: bool = False) -> None:
        """Feed one decoded source audio frame; ``after_loss``: audio packets just before it were undecodable."""
        if self.start_s is None:
            if frame.time is None:
                return
            self.start_s = float(frame.time)
            self._start_window()
        source_format = (frame.format.name, frame.layout.name, frame.sample_rate)
        if source_format != self._source_format:  # a new resampler when the decoder's output changes mid-stream
            self._flush_resampler()
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
            self._source_format = source_format
        assert self._resampler is not None
        source_frame = round(frame.samples * AUDIO_SAMPLE_RATE / frame.sample_rate)
        for out in self._resampler.resample(frame):
            self._timeline.place(resampled_samples(out), grid_position(out), after_loss, source_frame)

    def video_progress(self, start_s: float | None, frames: int) -> None:
        """The stored video so far: the source time of its first frame (once known) and its frame count."""
        if start_s is not None and self._video_start_s is None:
            self._video_start_s = start_s
            self._start_window()
        if frames > 0:
            self._window.release_until(audio_samples_for(frames))

    def finish(self, video_start_s: float, frames: int) -> AudioResult:
        """Flush everything and return the features of the ``frames``-frame window starting at ``video_start_s``."""
        self._flush_resampler()
        if self.start_s is None or not self._timeline.started:
            raise AudioTimingError("no decodable audio")
        self.video_progress(video_start_s, 0)
        needed = audio_samples_for(frames)
        padded = self._window.finish(needed)
        if self._mp3 is not None:
            self._mp3.finish()
        fbank = self._features.finish()
        offset = self._window.offset
        assert offset is not None and len(fbank) == 4 * frames, (offset, len(fbank), frames)
        level = 10 * math.log10(self._squares / needed / 32768**2) if self._squares > 0 else float("-inf")
        return AudioResult(fbank, self.start_s, padded, level, self._timeline.timing.within(offset, offset + needed))

    def _start_window(self) -> None:
        if self.start_s is not None and self._video_start_s is not None and self._window.offset is None:
            self._window.start(round((self._video_start_s - self.start_s) * AUDIO_SAMPLE_RATE))

    def _measure(self, signal: np.ndarray) -> None:
        self._squares += float(np.dot(signal, signal))
        (self._mp3.push if self._mp3 is not None else self._features.push)(signal)

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._timeline.place(resampled_samples(out), grid_position(out), False, 0)
            self._resampler = None


def resampled_samples(frame: av.AudioFrame) -> np.ndarray:
    """The int16 samples of a resampled (mono, packed) frame, viewed in its buffer: ``to_ndarray`` copies them
    through ``np.vstack``, which cost more than the rest of placing the frame."""
    return np.frombuffer(memoryview(frame.planes[0]), np.int16, frame.samples)


def grid_position(frame: av.AudioFrame) -> int | None:
    """Where a resampled frame starts, in 16 kHz samples from source time 0; None without a timestamp."""
    time_base = frame.time_base
    if frame.pts is None or time_base is None:
        return None
    # round(pts · time_base · 16000) in integers (round half to even, as round() does): Fraction arithmetic for
    # every resampled frame cost more than the placement itself
    quotient, remainder = divmod(frame.pts * time_base.numerator * AUDIO_SAMPLE_RATE, time_base.denominator)
    return quotient + (
        2 * remainder > time_base.denominator or (2 * remainder == time_base.denominator and quotient % 2)
    )
