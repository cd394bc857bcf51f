"""Video subsampler: decoded frames in, constant-25-fps short-side-resized H.264 MP4 bytes out.

One pass, in memory, with the ffmpeg libraries through PyAV: a filter graph (rotation, ``fps=25`` by
timestamps so variable-frame-rate sources come out constant, ``scale``, ``format=yuv420p``) feeds a libx264
encoder with a fixed GOP (see :mod:`avts.schema`) muxed into an MP4 in a ``BytesIO``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av

from avts.schema import GOP_FRAMES, VIDEO_FPS

_OUTPUT_TIME_BASE = Fraction(1, VIDEO_FPS)
MAX_STORED_SIDE = 16384  # libx264 refuses a larger picture side (an 8x4096 source at short side 128: 128x65536)


class UnsupportedSize(Exception):
    """The stored picture would be larger than the encoder can take."""


@dataclass(frozen=True)
class EncodedVideo:
    """The stored video and where its first frame sits on the source clock."""

    data: bytes
    frames: int
    start_s: float  # source time of stored frame 0
    width: int
    height: int


def rotation_filters(counterclockwise_degrees: float) -> list[tuple[str, str]]:
    """Filters that apply a display-matrix rotation, as the ffmpeg command line's autorotate does."""
    clockwise = round(-counterclockwise_degrees) % 360
    if clockwise == 90:
        return [("transpose", "clock")]
    if clockwise == 180:
        return [("hflip", ""), ("vflip", "")]
    if clockwise == 270:
        return [("transpose", "cclock")]
    return []


def x264_options(preset: str, crf: int, gop: int) -> dict[str, str]:
    """libx264 options of the stored video: fixed closed GOP of ``gop`` frames, reproducible bytes.

    ``mbtree=0``: x264's macroblock tree (core 165, as bundled with PyAV) reads uninitialized memory, so the
    same frames encoded twice could give different bytes (seen in tests); shards must be reproducible.
    """
    return {"preset": preset, "crf": str(crf), "x264-params": f"keyint={gop}:scenecut=0:open-gop=0:mbtree=0"}


def short_side_scale(short_side: int) -> str:
    """``scale`` filter arguments that make the short side ``short_side`` and keep the aspect ratio (even), in
    limited (TV) range: full-range sources (yuvj420p: phones, MJPEG webcams) are converted, as the ffmpeg CLI does,
    since the stored file is untagged and every player reads it as limited range."""
    return f"w='if(gt(iw,ih),-2,{short_side})':h='if(gt(iw,ih),{short_side},-2)':flags=bilinear:out_range=tv"


class VideoResampler:
    """Turns decoded source frames into the stored video; push frames, then call :meth:`finish`."""

    def __init__(
        self, short_side: int, crf: int, preset: str, threads: int, pixel_aspect: Fraction | None = None
    ) -> None:
        self._short_side = short_side
        self._pixel_aspect = pixel_aspect if pixel_aspect and pixel_aspect != 1 else None  # the source's SAR
        self._crf = crf
        self._preset = preset
        self._threads = threads
        self._graph: av.filter.Graph | None = None
        self._buffer = io.BytesIO()
        self._muxer: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._source_size: tuple[int, int] = (0, 0)
        self._first_pts: int | None = None
        self._start_s: float | None = None  # source time of stored frame 0 (asked after every frame: kept)
        self._frames = 0
        self.decoded = 0  # source frames pushed
        self.rotation = 0.0

    @property
    def frames(self) -> int:
        """Frames of the stored video so far."""
        return self._frames

    @property
    def start_s(self) -> float | None:
        """Source time of stored frame 0, once the first frame has come out of the filters."""
        return self._start_s

    def push(self, frame: av.VideoFrame) -> None:
        """Feed one decoded source frame."""
        if self._graph is None:
            self._graph = self._build_graph(frame)
        self._graph.push(frame)
        self.decoded += 1
        self._drain()

    def finish(self) -> EncodedVideo:
        """Flush the filter and encoder and return the MP4 bytes."""
        if self._graph is None:
            raise ValueError("no video frames decoded")
        self._graph.push(None)
        self._drain()
        if self._stream is None or self._muxer is None or self._start_s is None:
            raise ValueError(f"{self.decoded} decoded frame(s) gave no frame at {VIDEO_FPS} fps")
        self._muxer.mux(self._stream.encode(None))
        width, height = self._stream.width, self._stream.height
        self._muxer.close()
        return EncodedVideo(self._buffer.getvalue(), self._frames, self._start_s, width, height)

    def _build_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        self.rotation = float(frame.rotation or 0)
        self._source_size = (frame.width, frame.height)
        graph = av.filter.Graph()
        graph.threads = self._threads  # the default (one per core) only adds contention between workers
        nodes = [
            graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=frame.time_base)
        ]
        chain = [
            ("fps", f"{VIDEO_FPS}"),
            *rotation_filters(self.rotation),
            ("scale", short_side_scale(self._short_side)),
            ("format", "yuv420p"),
        ]
        nodes += [graph.add(name, args) for name, args in chain]
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        return graph

    def _drain(self) -> None:
        assert self._graph is not None
        while True:
            try:
                frame = self._graph.vpull()
            except (BlockingIOError, EOFError):
                return
            self._encode(frame)

    def _encode(self, frame: av.VideoFrame) -> None:
        assert frame.pts is not None  # the fps filter stamps every frame it outputs
        if self._first_pts is None:
            self._first_pts = frame.pts
            self._start_s = float(frame.pts * _OUTPUT_TIME_BASE)
            self._open_encoder(frame.width, frame.height)
        assert self._stream is not None and self._muxer is not None
        frame.pts = frame.pts - self._first_pts
        frame.time_base = _OUTPUT_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.NONE
        self._muxer.mux(self._stream.encode(frame))
        self._frames += 1

    def _stored_pixel_aspect(self, width: int, height: int) -> Fraction:
        """The source's pixel aspect carried to the stored size (the scale filter's rule), turned with the
        picture by a quarter-turn rotation."""
        assert self._pixel_aspect is not None
        source_width, source_height = self._source_size
        aspect = self._pixel_aspect if round(self.rotation) % 180 == 0 else 1 / self._pixel_aspect
        if round(self.rotation) % 180 != 0:
            source_width, source_height = source_height, source_width
        return (aspect * Fraction(height * source_width, width * source_height)).limit_denominator(65535)

    def _open_encoder(self, width: int, height: int) -> None:
        if max(width, height) > MAX_STORED_SIDE:
            source_width, source_height = self._source_size
            raise UnsupportedSize(
                f"{source_width}x{source_height} would be stored as {width}x{height}; H.264 takes at most "
                f"{MAX_STORED_SIDE} pixels a side (a smaller --short-side would fit)"
            )
        self._muxer = av.open(self._buffer, "w", format="mp4", options={"fflags": "+bitexact"})
        stream = self._muxer.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = _OUTPUT_TIME_BASE
        if self._pixel_aspect is not None:  # kept, as the ffmpeg CLI's scale does: the picture keeps its shape
            stream.codec_context.sample_aspect_ratio = self._stored_pixel_aspect(width, height)
        stream.codec_context.thread_count = self._threads
        stream.options = dict(x264_options(self._preset, self._crf, GOP_FRAMES))
        self._stream = stream
