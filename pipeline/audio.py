"""Audio subsampler: decoded frames in, 16 kHz mono signal aligned to the video, log filterbank features out."""

from __future__ import annotations

import io

import av
import numpy as np
from python_speech_features import logfbank

from avts.schema import (AUDIO_SAMPLE_RATE, FBANK_FILTERS, FBANK_NFFT, FBANK_STEP_S, FBANK_WINDOW_S,
                             audio_samples_for)


class AudioCollector:
    """Resamples decoded audio frames to 16 kHz mono int16 and keeps them with the time of the first one."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self.start_s: float | None = None

    def push(self, frame: av.AudioFrame) -> None:
        """Feed one decoded source audio frame."""
        if self.start_s is None:
            if frame.time is None:
                return
            self.start_s = float(frame.time)
        for out in self._resampler.resample(frame):
            self._chunks.append(out.to_ndarray().reshape(-1))

    def finish(self) -> np.ndarray:
        """Flush the resampler and return the whole signal (int16 values as float64)."""
        for out in self._resampler.resample(None):
            self._chunks.append(out.to_ndarray().reshape(-1))
        if not self._chunks:
            return np.zeros(0)
        return np.concatenate(self._chunks).astype(np.float64)


def align_to_video(signal: np.ndarray, audio_start_s: float, video_start_s: float,
                   frames: int) -> tuple[np.ndarray, int]:
    """Cut or zero-pad ``signal`` so sample 0 is at the first video frame and it spans ``frames`` frames.

    Returns the aligned signal and how many samples had to be padded (audio missing at either end).
    """
    needed = audio_samples_for(frames)
    offset = round((video_start_s - audio_start_s) * AUDIO_SAMPLE_RATE)
    if offset >= 0:
        body = signal[offset:offset + needed]
        lead = 0
    else:
        lead = min(-offset, needed)
        body = signal[:needed - lead]
    tail = needed - lead - len(body)
    aligned = np.concatenate([np.zeros(lead), body, np.zeros(tail)])
    return aligned, lead + tail


def rms_dbfs(signal: np.ndarray) -> float:
    """Root-mean-square level of an int16-scaled signal in dB relative to full scale."""
    if len(signal) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(signal))))
    return 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")


def mp3_round_trip(signal: np.ndarray, bitrate: int) -> np.ndarray:
    """Encode the 16 kHz mono signal to MP3 and decode it back (Chung & Zisserman's audio path).

    The result has the same length and alignment as the input: the MP3 encoder and decoder delays are
    removed by ffmpeg through the LAME/Xing header.
    """
    pcm = np.clip(np.round(signal), -32768, 32767).astype(np.int16).reshape(1, -1)
    encoded = io.BytesIO()
    with av.open(encoded, "w", format="mp3") as muxer:
        stream = muxer.add_stream("libmp3lame", rate=AUDIO_SAMPLE_RATE, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = 0
        muxer.mux(stream.encode(frame))
        muxer.mux(stream.encode(None))
    encoded.seek(0)
    collector = AudioCollector()
    with av.open(encoded, "r") as demuxer:
        for decoded in demuxer.decode(audio=0):
            collector.push(decoded)
    decoded_signal = collector.finish()
    out = np.zeros(len(signal))
    out[:min(len(signal), len(decoded_signal))] = decoded_signal[:len(signal)]
    return out


def log_filterbank(signal: np.ndarray) -> np.ndarray:
    """Log filterbank energies (window 0.02 s, step 0.01 s, FFT 1024, 40 filters) with python_speech_features."""
    return logfbank(signal, samplerate=AUDIO_SAMPLE_RATE, winlen=FBANK_WINDOW_S, winstep=FBANK_STEP_S,
                    nfilt=FBANK_FILTERS, nfft=FBANK_NFFT)
