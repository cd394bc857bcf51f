"""Audio path units: the streamed filterbank, placement by timestamps, the video-clock window, the MP3 round-trip.

Pure numpy/PyAV on synthetic signals; about 5 s on a 2-core CPU box.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
import pytest

from avts.schema import FBANK_DTYPE, audio_samples_for
from pipeline.audio import (
    BLOCK_ROWS,
    AudioTimeline,
    AudioTimingError,
    Mp3RoundTrip,
    StreamingFilterbank,
    VideoClockWindow,
    grid_position,
    log_filterbank,
    mel_filters,
    preemphasis,
    resampled_samples,
)


def clicks(length: int, at: list[int]) -> np.ndarray:
    """Low noise with loud 5-ms tone bursts starting at the given samples."""
    signal = np.random.default_rng(0).normal(0, 30, length)
    burst = 8000 * np.sin(2 * np.pi * 1000 * np.arange(80) / 16000)
    for start in at:
        signal[start : start + 80] += burst
    return signal


def speechlike(length: int, seed: int) -> np.ndarray:
    """An int16-valued signal with loud, quiet and exactly silent stretches."""
    rng = np.random.default_rng(seed)
    signal = np.round(rng.normal(0, 3000, length) * np.repeat(rng.uniform(0, 1, length // 800 + 1), 800)[:length])
    signal[length // 3 : length // 3 + 4000] = 0
    return signal


def in_pieces(signal: np.ndarray, seed: int) -> list[np.ndarray]:
    """Random cut points, with one-sample pieces among them."""
    rng = np.random.default_rng(seed)
    cuts = np.unique(np.concatenate([rng.integers(1, len(signal), 60), [1, 2, 3, len(signal) // 2]]))
    return np.split(signal, cuts)


@pytest.mark.parametrize("frames", [63, 250, 3 * BLOCK_ROWS // 4 + 1, 777])
def test_streamed_filterbank_equals_one_call_on_the_whole_signal(frames: int) -> None:
    """Block by block with the preemphasis carried over: exactly the values of python_speech_features on the whole
    (float64, bit for bit), whatever the piece sizes, for videos of 2.5 s (250 feature rows) and longer."""
    signal = speechlike(audio_samples_for(frames), seed=frames)
    whole = log_filterbank(signal)
    assert whole.shape == (4 * frames, 40)
    for seed in range(3):
        stream = StreamingFilterbank(dtype=np.float64)
        for piece in in_pieces(signal, seed):
            stream.push(piece)
        streamed = stream.finish()
        assert streamed.shape == whole.shape
        assert np.array_equal(streamed, whole), np.abs(streamed - whole).max()
    stored = StreamingFilterbank()
    stored.push(signal)
    assert np.array_equal(stored.finish(), whole.astype(FBANK_DTYPE))


def test_the_filters_and_the_preemphasis_are_python_speech_features_own_bit_for_bit() -> None:
    """The ingest computes logfbank's steps itself (importing python_speech_features imports scipy): the same
    filterbank and the same emphasized samples, not merely close ones."""
    from python_speech_features import get_filterbanks, sigproc

    assert np.array_equal(mel_filters(), get_filterbanks(40, 1024, 16000, 0, 8000))
    assert mel_filters().shape == (40, 513) and mel_filters().max() == 1.0
    for seed, length in enumerate([1, 2, 321, 16000]):
        signal = speechlike(length, seed)
        assert np.array_equal(preemphasis(signal), sigproc.preemphasis(signal, 0.97))


def test_log_filterbank_shape_matches_the_schema() -> None:
    frames = 50
    features = log_filterbank(clicks(audio_samples_for(frames), [1600]))
    assert features.shape == (4 * frames, 40)
    assert features[10:14].max() > features[100:].max()  # the burst at 0.1 s shows at feature frames 10..


def test_mp3_round_trip_keeps_length_and_timing_streamed_or_not() -> None:
    events = [4000, 9000, 17000, 30000]
    signal = clicks(48000, events)
    outputs = []
    for pieces in ([signal], in_pieces(signal, seed=1)):
        decoded: list[np.ndarray] = []
        round_trip = Mp3RoundTrip(64000, decoded.append)
        for piece in pieces:
            round_trip.push(piece)
        round_trip.finish()
        outputs.append(np.concatenate(decoded))
    assert np.array_equal(outputs[0], outputs[1])  # the encoder sees the same samples however they come
    decoded_signal = outputs[0]
    assert len(decoded_signal) == len(signal)
    assert not np.allclose(decoded_signal, signal)  # it really went through the codec
    lags = np.arange(-400, 401)
    correlation = [np.dot(np.roll(decoded_signal, -lag), signal) for lag in lags]
    assert abs(lags[int(np.argmax(correlation))]) <= 16  # aligned within 1 ms
    energy = np.convolve(decoded_signal**2, np.ones(80), "valid")
    for start in events:
        assert energy[start] > 50 * np.median(energy)


class Recorder:
    """A window sink that keeps everything."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []

    def __call__(self, samples: np.ndarray) -> None:
        self.pieces.append(samples)

    @property
    def signal(self) -> np.ndarray:
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0)


def placed(
    frames: Sequence[tuple[np.ndarray, int | None, bool]], source_frame: int = 1024
) -> tuple[np.ndarray, AudioTimeline]:
    """Run frames ``(samples, timestamp position, after_loss)`` through a timeline into an open window."""
    out = Recorder()
    window = VideoClockWindow(out)
    window.start(0)
    window.release_until(10**9)
    timeline = AudioTimeline(window)
    for samples, position, after_loss in frames:
        timeline.place(samples, position, after_loss, source_frame)
    window.flush()
    return out.signal, timeline


def ramp(start: int, length: int = 1024) -> np.ndarray:
    """Frame content that says where it came from: sample values are their true positions."""
    return np.arange(start, start + length, dtype=np.int16)


def test_contiguous_frames_with_small_jitter_are_joined_end_to_end() -> None:
    jitter = [0, 7, -5, 150, 8, -150, 0]  # e.g. 1-ms timestamps; <1 feature step: never a gap
    frames = [(ramp(1000 + 1024 * i), 1000 + 1024 * i + j, False) for i, j in enumerate(jitter)]
    signal, timeline = placed(frames)
    assert np.array_equal(signal, np.arange(1000, 1000 + 1024 * len(jitter)))
    assert timeline.timing.gaps == [] and timeline.timing.overlaps == []
    assert timeline.timing.max_drift == 150


def test_a_jump_forward_after_lost_packets_becomes_silence_at_the_right_place() -> None:
    frames = [
        (ramp(0), 0, False),
        (ramp(1024), 1024, False),
        (ramp(1024 * 5), 1024 * 5, True),  # three frames lost to undecodable packets
        (ramp(1024 * 6), 1024 * 6, False),
    ]
    signal, timeline = placed(frames)
    assert len(signal) == 1024 * 7
    assert np.array_equal(signal[:2048], np.arange(2048))
    assert not signal[2048 : 1024 * 5].any()  # silence where the audio is missing
    assert np.array_equal(signal[1024 * 5 :], np.arange(1024 * 5, 1024 * 7))  # on time after the gap
    assert timeline.timing.gaps == [(2048, 3 * 1024)]


def test_a_gap_of_one_feature_step_after_a_loss_is_filled_but_not_without_one() -> None:
    after_loss, _ = placed([(ramp(0), 0, False), (ramp(1024 + 160), 1024 + 160, True)])
    assert len(after_loss) == 2048 + 160 and not after_loss[1024:1184].any()
    # without a loss the timestamps are trusted to 95% of a source frame: a 160-sample offset is jitter
    jitter, timeline = placed([(ramp(0), 0, False), (ramp(1024 + 160), 1024 + 160, False)])
    assert len(jitter) == 2048 and timeline.timing.max_drift == 160


def test_a_whole_frame_timestamp_gap_without_decode_errors_is_filled() -> None:
    """gap.mkv's case: the timestamps skip (a skipped or lost packet), nothing failed to decode."""
    signal, timeline = placed([(ramp(0), 0, False), (ramp(2048), 2048, False)])
    assert len(signal) == 3072 and not signal[1024:2048].any()
    assert timeline.timing.gaps == [(1024, 1024)]


def test_vorbis_like_stamps_up_to_a_frame_off_are_jitter() -> None:
    """Vorbis in WebM stamps its long blocks ~0.9 frame off their samples for seconds on end (seen on a real
    clip): joined end to end, no gaps or overlaps."""
    frames, position = [], 0
    for index in range(40):
        offset = 330 if 10 <= index < 30 else 0
        frames.append((ramp(position, 371), position + offset, False))
        position += 371
    signal, timeline = placed(frames, source_frame=372)
    assert np.array_equal(signal, np.arange(40 * 371))
    assert timeline.timing.gaps == [] and timeline.timing.max_drift == 330


def test_timestamps_going_back_drop_the_repeated_audio() -> None:
    frames = [
        (ramp(0), 0, False),
        (ramp(1024), 1024, False),
        (ramp(1024, 2048), 1024, False),
    ]  # the second frame's audio again, then new audio
    signal, timeline = placed(frames)
    assert np.array_equal(signal, np.arange(3072))
    assert timeline.timing.overlaps == [(1024, 1024)] and timeline.timing.overlap_samples == 1024


def test_audio_without_timestamps_after_a_loss_cannot_be_placed() -> None:
    signal, timeline = placed([(ramp(0), 0, False), (ramp(1024), None, False)])
    assert len(signal) == 2048 and timeline.timing.untimed_frames == 1  # no loss: right after the previous one
    with pytest.raises(AudioTimingError, match="no timestamps"):
        placed([(ramp(0), 0, False), (ramp(4096), None, True)])


def test_window_cuts_or_pads_to_the_first_video_frame() -> None:
    grid = np.arange(48000, dtype=np.int16)
    needed = audio_samples_for(25)
    # video starts 0.5 s after the audio: grid samples before it are dropped
    out = Recorder()
    window = VideoClockWindow(out)
    window.push(grid[:20000])
    window.start(8000)
    window.push(grid[20000:])
    assert window.finish(needed) == 0
    assert np.array_equal(out.signal, np.arange(8000, 8000 + needed))
    # audio starts 0.25 s after the video: silence first
    out = Recorder()
    window = VideoClockWindow(out)
    window.start(-4000)
    window.push(grid)
    assert window.finish(needed) == 4000
    assert not out.signal[:4000].any() and np.array_equal(out.signal[4000:], np.arange(needed - 4000))
    # audio ends early: silence at the end, counted
    out = Recorder()
    window = VideoClockWindow(out)
    window.start(0)
    window.push(grid[:10000])
    assert window.finish(needed) == needed - 10000 and len(out.signal) == needed


def test_window_releases_only_what_the_stored_video_needs_so_far_a_second_at_a_time() -> None:
    out = Recorder()
    window = VideoClockWindow(out)
    window.start(0)
    window.push(np.ones(20000, dtype=np.int16))
    assert len(out.signal) == 0  # no video frame yet
    window.release_until(audio_samples_for(10))
    assert len(out.signal) == 0  # 6560 samples may go: less than a second, they wait for more
    window.release_until(audio_samples_for(30))
    assert len(out.signal) == audio_samples_for(30) == 19360  # a second or more: all that may go, in one piece
    assert len(out.pieces) == 1
    window.push(30000)  # silence (a gap) is kept as a count, not as an array
    window.push(np.ones(30000, dtype=np.int16))
    window.release_until(audio_samples_for(100))
    assert len(out.signal) == audio_samples_for(100) == 64160
    assert out.signal[:20000].all() and not out.signal[20000:50000].any() and out.signal[50000:].all()
    window.release_until(audio_samples_for(101))
    assert len(out.signal) == 64160
    window.flush()  # however little
    assert len(out.signal) == audio_samples_for(101) == 64800


def test_a_long_silence_is_handed_on_in_bounded_pieces() -> None:
    """A two-minute gap is never one array: memory stays flat in the gap's length."""
    out = Recorder()
    window = VideoClockWindow(out)
    window.start(0)
    window.push(np.ones(1000, dtype=np.int16))
    window.push(120 * 16000)
    window.push(np.ones(1000, dtype=np.int16))
    assert window.finish(120 * 16000 + 2000) == 0
    assert max(len(piece) for piece in out.pieces) == 10 * 16000
    assert sum(len(piece) for piece in out.pieces) == 120 * 16000 + 2000
    assert out.pieces[0][:1000].all() and not out.pieces[0][1000:].any() and out.pieces[-1][-1000:].all()


@pytest.mark.parametrize(("pts", "time_base"), [(1841, Fraction(1, 16000)), (441, Fraction(1, 44100))])
def test_grid_position_of_a_frame_is_its_timestamp_rounded_to_16_khz(pts: int, time_base: Fraction) -> None:
    frame = av.AudioFrame(format="s16", layout="mono", samples=4)
    frame.pts, frame.time_base = pts, time_base
    assert grid_position(frame) == round(pts * time_base * 16000)


def test_grid_position_rounds_exact_halves_to_even_as_round_does() -> None:
    frame = av.AudioFrame(format="s16", layout="mono", samples=4)
    positions = []
    for pts in (1, 3, 5, 7):  # 1/32000 s steps: every odd pts lands on half a 16 kHz sample
        frame.pts, frame.time_base = pts, Fraction(1, 32000)
        positions.append(grid_position(frame))
    assert positions == [0, 2, 2, 4]
    frame.pts = None
    assert grid_position(frame) is None


def test_resampled_samples_are_the_frames_samples_whatever_its_buffer_padding() -> None:
    """The in-place view must give exactly ``to_ndarray``'s samples: libav pads frame buffers, so the view has to stop
    at the frame's sample count."""
    source = av.AudioFrame.from_ndarray(
        np.random.default_rng(1).integers(-3000, 3000, (2, 1023), dtype=np.int16), format="s16p", layout="stereo"
    )
    source.sample_rate, source.pts, source.time_base = 44100, 0, Fraction(1, 44100)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    frames = [*resampler.resample(source), *resampler.resample(None)]
    assert sum(frame.samples for frame in frames) > 300
    for frame in frames:
        assert frame.planes[0].buffer_size >= 2 * frame.samples
        assert np.array_equal(resampled_samples(frame), frame.to_ndarray().reshape(-1))
