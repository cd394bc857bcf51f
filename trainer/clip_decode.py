"""Decode a 1-second window of a stored video: seek to the key frame before it, decode to the end of it."""

from __future__ import annotations

import io

import av
import numpy as np

from avts.schema import VIDEO_FPS


def decode_clip(video: bytes, start: int, frames: int) -> np.ndarray:
    """Frames ``[start, start + frames)`` of a stored MP4 as a ``(frames, H * 3 // 2, W)`` uint8 YUV 4:2:0 array.

    Each frame is PyAV's planar ``yuv420p`` layout: ``H`` rows of Y, then U and V (``H // 2 × W // 2`` each,
    packed as ``H // 4`` rows of ``W``). Colour conversion is left to the GPU (:mod:`trainer.augment`):
    on the CPU it would cost more than the decoding itself. The stored video has one key frame per second
    (see :mod:`avts.schema`), so at most one second is decoded before the window. A window that runs
    past the end repeats the last frame.
    """
    with av.open(io.BytesIO(video), "r") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        time_base = stream.time_base
        if time_base is None:
            raise ValueError("the stored video stream has no time base")
        origin = stream.start_time or 0
        container.seek(origin + int(start / VIDEO_FPS / time_base), stream=stream, backward=True)
        out: list[np.ndarray] = []
        for frame in container.decode(stream):
            index = round(((frame.pts or 0) - origin) * time_base * VIDEO_FPS)
            if index < start:
                continue
            out.append(frame.to_ndarray(format="yuv420p"))
            if len(out) == frames:
                break
    if not out:
        raise ValueError(f"no frames at or after frame {start}")
    while len(out) < frames:
        out.append(out[-1])
    return np.stack(out)


def split_planes(clip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y ``(T, H, W)``, U and V ``(T, H // 2, W // 2)`` planes of a :func:`decode_clip` result."""
    frames, rows, width = clip.shape
    height = rows * 2 // 3
    chroma = clip[:, height:].reshape(frames, 2, height // 2, width // 2)
    return clip[:, :height], chroma[:, 0], chroma[:, 1]
