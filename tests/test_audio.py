"""Audio path: alignment to the video clock and the optional MP3 round-trip (Chung & Zisserman)."""

from __future__ import annotations

import numpy as np

from pipeline.audio import align_to_video, log_filterbank, mp3_round_trip
from avts.schema import audio_samples_for


def clicks(length: int, at: list[int]) -> np.ndarray:
    """Low noise with loud 5-ms tone bursts starting at the given samples."""
    signal = np.random.default_rng(0).normal(0, 30, length)
    burst = 8000 * np.sin(2 * np.pi * 1000 * np.arange(80) / 16000)
    for start in at:
        signal[start:start + 80] += burst
    return signal


def test_align_cuts_or_pads_to_the_first_video_frame() -> None:
    signal = np.arange(48000, dtype=np.float64)
    aligned, padded = align_to_video(signal, audio_start_s=0.0, video_start_s=0.5, frames=25)
    assert len(aligned) == audio_samples_for(25) and padded == 0 and aligned[0] == 8000
    aligned, padded = align_to_video(signal, audio_start_s=0.25, video_start_s=0.0, frames=25)
    assert padded == 4000 and aligned[:4000].sum() == 0 and aligned[4000] == 0 and aligned[4001] == 1
    aligned, padded = align_to_video(signal[:10000], audio_start_s=0.0, video_start_s=0.0, frames=25)
    assert padded == audio_samples_for(25) - 10000


def test_mp3_round_trip_keeps_length_and_timing() -> None:
    events = [4000, 9000, 17000, 30000]
    signal = clicks(48000, events)
    decoded = mp3_round_trip(signal, bitrate=64000)
    assert len(decoded) == len(signal)
    assert not np.allclose(decoded, signal)  # it really went through the codec
    lags = np.arange(-400, 401)
    correlation = [np.dot(np.roll(decoded, -lag), signal) for lag in lags]
    assert abs(lags[int(np.argmax(correlation))]) <= 16  # aligned within 1 ms
    energy = np.convolve(decoded**2, np.ones(80), "valid")
    for start in events:
        assert energy[start] > 50 * np.median(energy)


def test_log_filterbank_shape_matches_the_schema() -> None:
    frames = 50
    features = log_filterbank(clicks(audio_samples_for(frames), [1600]))
    assert features.shape == (4 * frames, 40)
    assert features[10:14].max() > features[100:].max()  # the burst at 0.1 s shows at feature frames 10..
