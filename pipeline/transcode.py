"""One input file → one shard sample, in a single demux/decode pass; bad input raises :class:`MediaError`.

Memory does not grow with the video's length: video frames are encoded and audio features computed as the
packets are decoded (see :mod:`pipeline.video` and :mod:`pipeline.audio`); only the encoded MP4 and the float16
features (~20 KB per second at the defaults) are kept.

Damage policy. A file that ends before the duration its container declares (*truncated*), or that lost more than
:data:`DAMAGE_TOLERANCE_S` of media mid-file to undecodable packets (*corrupt middle*), fails by default
(``truncated: decoded 5.1 of 35.2 s``; ``corrupt: 1.0 s lost mid-file to undecodable data (16 bad packets)``).
With ``keep_truncated`` the decoded part is kept, placed by its timestamps (silence where audio is missing), and
the row and the sample's metadata say so (``truncated``, ``lost_s``, the same text in ``detail``).

Clock policy. Containers whose clock may jump (MPEG-TS: joined recordings, DVR captures; ffmpeg's ``ts_discont``
formats) are rejoined as the ffmpeg command line does: a stream whose next frame is more than
:data:`CLOCK_JUMP_S` ahead of where the stream was, or more than :data:`CLOCK_BACK_S` behind, continues where it
was, and the row counts the jumps (``timestamp_jumps``). One shift applies to all streams, so they stay in sync
after a jump. A step back counts as a jump beyond 1 s, where the ffmpeg CLI takes 0.1 s: at a join the audio of the
next segment starts up to ~0.15 s before where the last one's ended (AAC priming and padding), and rejoining that
step again would shift both streams by it; the overlap is instead dropped by the audio placement, as any overlap
is. In other containers the timestamps are the truth (audio
gaps become silence), but a hole of more than :data:`MAX_VIDEO_HOLE_S` in the video is broken timestamps, not
media: the file fails (``timestamp jump``) instead of becoming hours of one frozen frame.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from avts.schema import AUDIO_SAMPLE_RATE, FBANK_DTYPE, FBANK_FILTERS, VIDEO_FPS, Sample, SampleMeta, feature_frames_for
from pipeline.audio import AudioResult, AudioTimingError, AudioTrack, silent_features
from pipeline.config import EncodeSettings
from pipeline.discover import VideoItem
from pipeline.manifest import IngestFacts, SourceInfo
from pipeline.video import EncodedVideo, UnsupportedSize, VideoResampler

SILENCE_DBFS = -70.0
MAX_DECODE_ERRORS = 50
DAMAGE_TOLERANCE_S = 0.5  # media missing at the end or lost mid-file beyond this makes a file damaged
DEFAULT_BONUS = 5_000_000  # the ffmpeg CLI's weight of the `default` disposition when it picks a stream
TEXT_FORMATS = {"tty"}  # ffmpeg opens .txt/.nfo/... text as an ANSI-art "video"; not a media file
CLOCK_JUMP_S = 10.0  # the ffmpeg CLI's -dts_delta_threshold: a larger jump in a ts_discont container is rejoined
CLOCK_BACK_S = 1.0  # ... as is a step back of more than this (fftools: 0.1 s; see the module's clock policy)
MAX_VIDEO_HOLE_S = 60.0  # elsewhere, a longer hole in the video timestamps fails the file
TS_DISCONT: int = av.format.Flags.ts_discont.value  # type: ignore[assignment]  # an int (PyAV's stubs: a Flags)


class MediaError(Exception):
    """A file that cannot become a sample; ``reason`` is short, stable and human-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.source = SourceInfo()  # what was known of the file when it failed
        self.decode_errors = 0  # corrupt packets met before it failed


@dataclass(frozen=True)
class Transcoded:
    """A finished sample plus facts for the manifest."""

    sample: Sample
    source: SourceInfo
    decode_errors: int  # corrupt packets skipped
    facts: IngestFacts  # audio placement and damage
    damage: str | None  # what was wrong with a file kept with keep_truncated, for the row's detail


def check_readable(path: Path) -> None:
    """Clear reasons (:class:`MediaError`) for files that cannot be read at all, before any demuxing; also keeps
    every reader away from pipes and devices (opening a named pipe waits for a writer for ever)."""
    try:
        status = path.stat()
    except FileNotFoundError as error:
        if path.is_symlink():
            raise MediaError("unreadable", f"broken symlink: {os.readlink(path)} does not exist") from error
        raise MediaError("unreadable", "file not found: a broken symlink, or removed after it was listed") from error
    except OSError as error:
        raise MediaError("unreadable", error.strerror or str(error)) from error
    if not stat.S_ISREG(status.st_mode):  # reading a pipe can block for ever, a device never ends
        raise MediaError("not a regular file", f"a {special_kind(status.st_mode)}; only files are read")
    if status.st_size == 0:
        raise MediaError("empty file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise MediaError("unreadable", error.strerror or str(error)) from error


def special_kind(mode: int) -> str:
    """What a file that is not a regular file is (from its ``st_mode``)."""
    kinds = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "socket" if stat.S_ISSOCK(mode) else "special file")


def open_media(item: VideoItem) -> av.container.InputContainer:
    """Open a file by content (not extension), with clear reasons for unreadable, empty and non-media files."""
    check_readable(item.path)
    try:
        container = av.open(str(item.path), "r")
    except av.FFmpegError as error:
        raise MediaError("not a media file", str(error)) from error
    if container.format.name in TEXT_FORMATS:
        container.close()
        raise MediaError("not a media file", f"text ({container.format.name} demuxer)")
    return container


def is_attached_picture(stream: av.stream.Stream) -> bool:
    """Cover art and the like: a "video" stream holding one still picture."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _cli_choice(streams: list[Any], size: Callable[[Any], int]) -> Any:
    best, best_score = None, 0
    for stream in streams:
        score = size(stream) + DEFAULT_BONUS * bool(stream.disposition & av.stream.Disposition.default)
        if score > best_score:  # the first of equals wins
            best, best_score = stream, score
    return best


def pick_video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The video stream the ffmpeg command line maps by default: highest resolution, a `default` disposition
    outweighing it; attached pictures (cover art) never count as video here."""
    moving = [stream for stream in container.streams.video if not is_attached_picture(stream)]
    return _cli_choice(moving, lambda s: s.codec_context.width * s.codec_context.height)


def pick_audio_stream(container: av.container.InputContainer) -> av.AudioStream | None:
    """The audio stream the ffmpeg command line maps by default: most channels, a `default` disposition
    outweighing them (fftools ``map_auto_audio``: score = channels + 5,000,000 × default; first wins ties)."""
    return _cli_choice(list(container.streams.audio), lambda s: s.codec_context.channels)


def declared_end_s(container: av.container.InputContainer, streams: list[av.stream.Stream]) -> float | None:
    """Where the container says the chosen streams end (source seconds), or None if it does not say."""
    ends = [
        float((stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base)
        for stream in streams
        if stream.duration and stream.time_base is not None
    ]
    if len(ends) == len(streams):
        return max(ends)
    if container.duration:
        return ((container.start_time or 0) + container.duration) / av.time_base
    return max(ends) if ends else None


def source_info(
    container: av.container.InputContainer, video: av.VideoStream | None, audio: av.AudioStream | None
) -> SourceInfo:
    """Source frame rate, size, audio facts and declared duration from the stream headers."""
    return SourceInfo(
        fps=float(video.average_rate) if video is not None and video.average_rate else None,
        width=video.codec_context.width if video is not None else None,
        height=video.codec_context.height if video is not None else None,
        has_audio=audio is not None,
        audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        audio_channels=audio.codec_context.channels if audio is not None else None,
        audio_stream=audio.index if audio is not None else None,
        duration_s=container.duration / av.time_base if container.duration else None,
    )


def transcode(item: VideoItem, settings: EncodeSettings) -> Transcoded:
    """Decode ``item`` once and build its sample: 25 fps video, audio features on its clock, metadata."""
    with open_media(item) as container:
        video_stream, audio_stream = pick_video_stream(container), pick_audio_stream(container)
        info = source_info(container, video_stream, audio_stream)
        try:
            if video_stream is None:
                pictures = any(is_attached_picture(stream) for stream in container.streams.video)
                raise MediaError(
                    "no video stream",
                    ("audio only (cover art)" if pictures else "audio only") if audio_stream is not None else "",
                )
            if audio_stream is None and not settings.keep_without_audio:
                raise MediaError("no audio stream")
            try:
                return _transcode_streams(item, settings, container, video_stream, audio_stream, info)
            except UnsupportedSize as error:
                raise MediaError("unsupported size", str(error)) from None
        except MediaError as error:
            error.source = info
            raise


class StreamCoverage:
    """Where one stream's decoded frames start and end, and how much undecodable packets cost it mid-file."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.end: float | None = None
        self.lost_s = 0.0
        self.loss_pending = False  # packets were undecodable since the last decoded frame

    def frame(self, start: float | None, duration: float) -> None:
        """A decoded frame at source time ``start`` lasting ``duration`` seconds."""
        if start is None:
            return
        if self.loss_pending and self.end is not None and start > self.end:
            self.lost_s += start - self.end
        self.loss_pending = False
        self.first = start if self.first is None else min(self.first, start)
        self.end = start + duration if self.end is None else max(self.end, start + duration)


class MediaClock:
    """The file's timestamps made continuous where its container's clock jumps (see the module's clock policy).

    As in the ffmpeg command line, one shift applies to every stream of the file, so the streams stay in sync
    with each other after a jump: the first stream to meet the jump sets the shift that makes it continue where
    it was, and the other stream's frames, shifted alike, then continue too. :meth:`place` shifts a decoded
    frame's ``pts`` in place, so everything downstream (the filters, the audio placement, the coverage) sees the
    rejoined clock.
    """

    def __init__(self, rejoin: bool) -> None:
        self.rejoin = rejoin
        self.shift = Fraction(0)  # seconds added to every timestamp
        self.expected: dict[str, float] = {}  # per stream: where its next frame should start, rejoined seconds
        self.jumps = 0

    def place(self, frame: av.VideoFrame | av.AudioFrame, duration_s: float, max_hole_s: float | None) -> None:
        """Rejoin ``frame``'s timestamp (in place) if needed; raise :class:`MediaError` for a hole longer than
        ``max_hole_s`` in a container whose clock is not rejoined."""
        raw = frame.pts
        if raw is None or frame.time_base is None:
            return
        kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
        shifted = raw + round(self.shift / frame.time_base) if self.shift else raw  # Fraction work only after a jump
        frame.pts = shifted
        start = shifted * float(frame.time_base)
        expected = self.expected.get(kind)
        if expected is not None:
            jump = start - expected
            if self.rejoin and (jump > CLOCK_JUMP_S or jump < -CLOCK_BACK_S):
                self.shift -= Fraction(jump)
                self.jumps += 1
                shifted = raw + round(self.shift / frame.time_base)
                frame.pts = shifted
                start = shifted * float(frame.time_base)
            elif not self.rejoin and max_hole_s is not None and jump > max_hole_s:
                raise MediaError(
                    "timestamp jump",
                    f"the {kind}'s timestamps jump {jump:.1f} s ahead at {expected:.1f} s (broken timestamps; "
                    "`ffmpeg -i IN -c copy OUT.mkv` rewrites them)",
                )
        end = start + duration_s
        self.expected[kind] = end if expected is None else max(expected, end)


@dataclass
class Decoded:
    """What the decoding pass met."""

    errors: list[str]
    video: StreamCoverage
    audio: StreamCoverage
    timestamp_jumps: int = 0  # discontinuities of the container's clock rejoined


def decode_streams(
    container: av.container.InputContainer,
    video_stream: av.VideoStream,
    audio_stream: av.AudioStream | None,
    video: VideoResampler,
    audio: AudioTrack,
) -> Decoded:
    """Demux and decode both streams into their subsamplers; returns the errors met and the streams' coverage.

    Like the ffmpeg command line, a corrupt packet is skipped rather than ending the file, and a container
    that breaks off (a truncated file) keeps what was read before; too many bad packets make the file fail.
    Whether what was decoded is enough is decided by the caller.
    """
    decoded = Decoded([], StreamCoverage(), StreamCoverage())
    frame_s = 1 / float(video_stream.average_rate) if video_stream.average_rate else 1 / VIDEO_FPS
    video_time_base = float(video_stream.time_base or 0)
    rejoin = bool(container.format.flags & TS_DISCONT)
    clock = MediaClock(rejoin)
    try:
        for packet in container.demux(*[stream for stream in (video_stream, audio_stream) if stream is not None]):
            coverage = decoded.video if packet.stream is video_stream else decoded.audio
            try:
                frames = packet.decode()
            except av.FFmpegError as error:
                decoded.errors.append(str(error))
                coverage.loss_pending = True
                if len(decoded.errors) > MAX_DECODE_ERRORS:
                    raise MediaError("corrupt", f"more than {MAX_DECODE_ERRORS} undecodable packets") from error
                continue
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    duration = frame.duration * video_time_base if frame.duration else 0  # frames: the stream's base
                    clock.place(frame, duration or frame_s, MAX_VIDEO_HOLE_S)
                    coverage.frame(frame.time, duration or frame_s)
                    video.push(frame)
                    audio.video_progress(video.start_s, video.frames)
                elif isinstance(frame, av.AudioFrame):
                    after_loss = coverage.loss_pending
                    clock.place(frame, frame.samples / frame.sample_rate if frame.sample_rate else 0.0, None)
                    coverage.frame(frame.time, frame.samples / frame.sample_rate if frame.sample_rate else 0.0)
                    audio.push(frame, after_loss)
    except av.FFmpegError as error:
        decoded.errors.append(str(error))
    except AudioTimingError as error:
        failure = MediaError("audio out of sync", str(error))
        failure.decode_errors = len(decoded.errors)
        raise failure from error
    except MediaError as failure:
        failure.decode_errors = len(decoded.errors)
        raise
    decoded.timestamp_jumps = clock.jumps
    return decoded


def damage_of(
    container: av.container.InputContainer, streams: list[av.stream.Stream], decoded: Decoded
) -> tuple[str, str] | None:
    """``(reason, detail)`` when the file is truncated or lost too much mid-file, else None. A rejoined clock
    (see the module's clock policy) makes the container's declared end meaningless: no truncation check then."""
    declared = None if decoded.timestamp_jumps else declared_end_s(container, streams)
    ends = [c.end for c in (decoded.video, decoded.audio) if c.end is not None]
    firsts = [c.first for c in (decoded.video, decoded.audio) if c.first is not None]
    if declared is not None and ends and declared - max(ends) > DAMAGE_TOLERANCE_S:
        start = min(firsts)
        return "truncated", f"decoded {max(ends) - start:.1f} of {declared - start:.1f} s"
    lost = max(decoded.video.lost_s, decoded.audio.lost_s)
    if lost > DAMAGE_TOLERANCE_S:
        bad = len(decoded.errors)
        return "corrupt", f"{lost:.1f} s lost mid-file to undecodable data ({bad} bad packet{'s' * (bad != 1)})"
    return None


def _transcode_streams(
    item: VideoItem,
    settings: EncodeSettings,
    container: av.container.InputContainer,
    video_stream: av.VideoStream,
    audio_stream: av.AudioStream | None,
    info: SourceInfo,
) -> Transcoded:
    streams: list[av.stream.Stream] = [stream for stream in (video_stream, audio_stream) if stream is not None]
    for stream in streams:
        stream.codec_context.thread_count = settings.threads
    video = VideoResampler(
        settings.short_side,
        settings.crf,
        settings.preset,
        settings.threads,
        video_stream.codec_context.sample_aspect_ratio,
    )
    audio = AudioTrack(settings.mp3_bitrate if settings.mp3 else None)
    decoded = decode_streams(container, video_stream, audio_stream, video, audio)
    try:
        return _finish(item, settings, container, streams, video, audio, decoded, info)
    except MediaError as error:
        error.decode_errors = len(decoded.errors)
        raise


def _finish(
    item: VideoItem,
    settings: EncodeSettings,
    container: av.container.InputContainer,
    streams: list[av.stream.Stream],
    video: VideoResampler,
    audio: AudioTrack,
    decoded: Decoded,
    info: SourceInfo,
) -> Transcoded:
    errors = decoded.errors
    try:
        encoded = video.finish()
    except ValueError as error:
        if video.decoded:  # e.g. a single frame: nothing comes out of the 25-fps filter
            raise MediaError("too short", f"{video.decoded / VIDEO_FPS:.2f} s < {settings.min_duration} s") from error
        raise MediaError("corrupt", errors[-1] if errors else "no decodable video frames") from error
    damage = damage_of(container, streams, decoded)
    if damage is not None and not settings.keep_truncated:
        raise MediaError(*damage)
    if encoded.frames < settings.min_duration * VIDEO_FPS:
        raise MediaError("too short", f"{encoded.frames / VIDEO_FPS:.2f} s < {settings.min_duration} s")
    if not audio.started and info.has_audio:
        raise MediaError("corrupt", errors[-1] if errors else "no decodable audio")
    kept = _Kept(item, settings, encoded, decoded, damage, info, video.rotation)
    if not audio.started:  # no audio stream, kept with keep_without_audio
        return kept.without_audio()
    placed = audio.finish(encoded.start_s, encoded.frames)
    if placed.covered_samples < settings.min_duration * AUDIO_SAMPLE_RATE:
        raise MediaError("audio too short", f"covers {placed.covered_samples / AUDIO_SAMPLE_RATE:.2f} s")
    if placed.level_dbfs < SILENCE_DBFS:
        if settings.keep_without_audio:
            return kept.without_audio()
        raise MediaError("silent audio", f"RMS {placed.level_dbfs:.0f} dBFS")
    return kept.sample(placed.fbank, ingest_facts(placed, kept), placed.pad_samples / AUDIO_SAMPLE_RATE)


@dataclass(frozen=True)
class _Kept:
    """A video that passed every check: what its sample is made from, whatever its audio."""

    item: VideoItem
    settings: EncodeSettings
    encoded: EncodedVideo
    decoded: Decoded
    damage: tuple[str, str] | None
    info: SourceInfo
    rotation: float

    def damage_facts(self) -> dict[str, Any]:
        """The manifest's damage columns (a file kept with ``keep_truncated``)."""
        lost_s = max(self.decoded.video.lost_s, self.decoded.audio.lost_s)
        return {
            "truncated": self.damage is not None and self.damage[0] == "truncated",
            "lost_s": round(lost_s, 3),
            "timestamp_jumps": self.decoded.timestamp_jumps,
        }

    def without_audio(self) -> Transcoded:
        """The sample of a video kept without (audible) audio: its features are those of silence."""
        frames = feature_frames_for(self.encoded.frames)
        fbank = np.broadcast_to(silent_features(), (frames, FBANK_FILTERS)).astype(FBANK_DTYPE)
        return self.sample(fbank, IngestFacts(**self.damage_facts(), audible=False), 0.0)

    def sample(self, fbank: np.ndarray, facts: IngestFacts, audio_pad_s: float) -> Transcoded:
        """The finished sample (stored video, features, metadata) and what the manifest records of it; sizes are
        reported as displayed, i.e. swapped by a quarter-turn rotation, as the stored video shows them."""
        item, encoded, info, damage = self.item, self.encoded, self.info, self.damage
        if round(self.rotation) % 180 != 0:
            info = replace(info, width=info.height, height=info.width)
        meta = SampleMeta(
            key=item.key,
            source=item.relpath,
            label=item.label,
            duration_s=encoded.frames / VIDEO_FPS,
            source_start_s=encoded.start_s,
            frames=encoded.frames,
            fps=info.fps or 0.0,
            width=info.width or 0,
            height=info.height or 0,
            stored_width=encoded.width,
            stored_height=encoded.height,
            audio_sample_rate=info.audio_sample_rate or 0,
            audio_channels=info.audio_channels or 0,
            audio_pad_s=audio_pad_s,
            mp3=self.settings.mp3,
            audio_stream=info.audio_stream,
            **asdict(facts),
        )
        sample = Sample(item.key, encoded.data, fbank, meta)
        detail = f"{damage[0]}: {damage[1]}" if damage else None
        return Transcoded(sample, info, len(self.decoded.errors), facts, detail)


def ingest_facts(placed: AudioResult, kept: _Kept) -> IngestFacts:
    """The manifest's account of how the audio was placed and what was damaged."""
    timing = placed.timing
    return IngestFacts(
        audio_gaps=len(timing.gaps),
        audio_gap_s=timing.gap_samples / AUDIO_SAMPLE_RATE,
        audio_overlaps=len(timing.overlaps),
        audio_overlap_s=timing.overlap_samples / AUDIO_SAMPLE_RATE,
        audio_drift_ms=round(1000 * timing.max_drift / AUDIO_SAMPLE_RATE, 3),
        **kept.damage_facts(),
    )
