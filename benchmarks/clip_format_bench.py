"""Which stored video format lets the trainer decode a random 1-s clip cheaply? (the README's format choice)

Encodes the same 10-s, 25 fps, short-side-128 video as H.264 with key frames every 5, 10 or 25 frames and
as JPEG frames (MJPEG, one JPEG per frame: any frame decodes alone), then times decoding random 25-frame
windows on one core, to YUV (what the trainer ships; colour conversion runs on the GPU) and to RGB (for
comparison), and reports bytes per second of video. Appends a ``## Clip format`` section to RESULTS.md.

    python benchmarks/clip_format_bench.py --source ../shared/data/real_clips/moviepy_resource_1.mp4
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from bench_results import machine_line, write_section  # noqa: E402

from pipeline.video import short_side_scale, x264_options  # noqa: E402

SECONDS = 10


def source_frames(path: Path) -> list[av.VideoFrame]:
    """The first 10 s of the source at 25 fps, short side 128, yuv420p."""
    graph = av.filter.Graph()
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        nodes = [
            graph.add_buffer(template=stream),
            graph.add("fps", "25"),
            graph.add("scale", short_side_scale(128)),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        graph.link_nodes(*nodes).configure()
        for frame in container.decode(stream):
            graph.push(frame)
            while True:
                try:
                    frames.append(graph.vpull())
                except (BlockingIOError, EOFError):
                    break
            if len(frames) >= 25 * SECONDS:
                break
    return frames[: 25 * SECONDS]


def encode(frames: list[av.VideoFrame], codec: str, options: dict[str, str]) -> bytes:
    """Encode frames into an in-memory MP4 (H.264) or MKV (MJPEG)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4" if codec == "libx264" else "matroska") as muxer:
        stream = muxer.add_stream(codec, rate=25)
        stream.width, stream.height = frames[0].width, frames[0].height
        stream.pix_fmt = "yuv420p" if codec == "libx264" else "yuvj420p"
        stream.options = options
        for index, frame in enumerate(frames):
            frame = frame.reformat(format=stream.pix_fmt)
            frame.pts, frame.time_base = index, Fraction(1, 25)
            muxer.mux(stream.encode(frame))
        muxer.mux(stream.encode(None))
    return buffer.getvalue()


def clips_per_second(data: bytes, fmt: str, count: int = 80) -> float:
    """Random 25-frame windows decoded per second on one thread."""
    random.seed(0)
    started = time.perf_counter()
    for _ in range(count):
        start = random.randrange(0, 25 * SECONDS - 25)
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            container.seek(int(start / 25 / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
            got = 0
            for frame in container.decode(stream):
                if round((frame.pts - (stream.start_time or 0)) * stream.time_base * 25) < start:
                    continue
                np.asarray(frame.to_ndarray(format=fmt))
                got += 1
                if got == 25:
                    break
    return count / (time.perf_counter() - started)


def main() -> int:
    """Run the comparison and record it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, required=True, help="a video of at least 10 s")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    frames = source_frames(args.source)
    variants = {f"H.264 GOP {g}": ("libx264", x264_options("veryfast", 23, g)) for g in (5, 10, 25)}
    variants["JPEG frames (q=5)"] = ("mjpeg", {"qscale": "5"})
    rows = [
        "| format | KB per s of video | clips/s/core (YUV out) | clips/s/core (RGB out) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (codec, options) in variants.items():
        data = encode(frames, codec, options)
        yuv = clips_per_second(data, "yuv420p" if codec == "libx264" else "yuvj420p")
        rgb = clips_per_second(data, "rgb24")
        rows.append(f"| {name} | {len(data) / SECONDS / 1024:.1f} | {yuv:.0f} | {rgb:.0f} |")
    body = "\n".join(
        [
            f"Machine: {machine_line()}. Source: `{args.source.name}`, first 10 s, "
            f"{frames[0].width}×{frames[0].height} at 25 fps. One thread, random 1-s windows.",
            "",
            *rows,
        ]
    )
    print(body)
    write_section(args.results, "Clip format", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
