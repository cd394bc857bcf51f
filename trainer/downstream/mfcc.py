"""The SVM-MFCC baseline of Table 3 (Piczak, ESC, 2015): per-clip mean and standard deviation of 13 MFCCs.

MFCCs are computed on the same 16 kHz mono signal the network features see (one decode path for every
feature kind), with python_speech_features' defaults: 25-ms rectangular windows, 10-ms step,
26 mel filters, FFT 512 (covers the 400-sample window at 16 kHz), pre-emphasis 0.97, liftering 22, and
c0 replaced by the log frame energy. The whole clip is used, never padded. Piczak also summarized the
zero-crossing rate; ``zcr=True`` appends its mean and standard deviation (off by default).
"""

from __future__ import annotations

import numpy as np
from python_speech_features import mfcc
from python_speech_features.sigproc import framesig

from avts.schema import AUDIO_SAMPLE_RATE

N_MFCC = 13
MFCC_WINDOW_S, MFCC_STEP_S = 0.025, 0.01


def mfcc_dim(zcr: bool = False) -> int:
    """Length of the :func:`mfcc_stats` vector: 26, or 28 with the zero-crossing rate."""
    return 2 * N_MFCC + (2 if zcr else 0)


def mfcc_stats(signal: np.ndarray, zcr: bool = False) -> np.ndarray:
    """``[mean(13 MFCCs), std(13 MFCCs)]`` over the clip's frames (+ ``[mean(ZCR), std(ZCR)]``), float32."""
    coefficients = mfcc(signal, samplerate=AUDIO_SAMPLE_RATE, winlen=MFCC_WINDOW_S, winstep=MFCC_STEP_S, numcep=N_MFCC)
    parts = [coefficients.mean(axis=0), coefficients.std(axis=0)]
    if zcr:
        frames = framesig(signal, round(MFCC_WINDOW_S * AUDIO_SAMPLE_RATE), round(MFCC_STEP_S * AUDIO_SAMPLE_RATE))
        rate = np.mean(np.diff(np.signbit(frames), axis=1), axis=1)  # sign changes per sample pair
        parts.append(np.array([rate.mean(), rate.std()]))
    return np.concatenate(parts).astype(np.float32)
