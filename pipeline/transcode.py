"""One input file → one shard sample, in a single demux/decode pass; bad input raises :class:`MediaError`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import av
import numpy as np

from pipeline.audio import AudioCollector, align_to_video, log_filterbank, mp3_round_trip, rms_dbfs
from pipeline.config import EncodeSettings
from pipeline.discover import VideoItem
from pipeline.manifest import SourceInfo
from avts.schema import AUDIO_SAMPLE_RATE, FBANK_DTYPE, VIDEO_FPS, Sample, SampleMeta
from pipeline.video import VideoResampler

SILENCE_DBFS = -70.0
MAX_DECODE_ERRORS = 50
TEXT_FORMATS = {"tty"}  # ffmpeg opens .txt/.nfo/... text as an ANSI-art "video"; not a media file


class MediaError(Exception):
    """A file that cannot become a sample; ``reason`` is short, stable and human-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.source = SourceInfo()  # what was known of the file when it failed


@dataclass(frozen=True)
class Transcoded:
    """A finished sample plus facts for the manifest."""

    sample: Sample
    source: SourceInfo
    decode_errors: int  # corrupt packets skipped


def open_media(item: VideoItem) -> av.container.InputContainer:
    """Open a file by content (not extension), with clear reasons for empty and non-media files."""
    if item.path.stat().st_size == 0:
        raise MediaError("empty file")
    try:
        container = av.open(str(item.path), "r")
    except av.FFmpegError as error:
        raise MediaError("not a media file", str(error)) from error
    if container.format.name in TEXT_FORMATS:
        container.close()
        raise MediaError("not a media file", f"text ({container.format.name} demuxer)")
    return container


def source_info(container: av.container.InputContainer) -> SourceInfo:
    """Source frame rate, size and audio facts from the stream headers."""
    video = container.streams.best("video")
    audio = container.streams.best("audio")
    return SourceInfo(
        fps=float(video.average_rate) if video is not None and video.average_rate else None,
        width=video.codec_context.width if video is not None else None,
        height=video.codec_context.height if video is not None else None,
        has_audio=audio is not None,
        audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        audio_channels=audio.codec_context.channels if audio is not None else None,
    )


def transcode(item: VideoItem, settings: EncodeSettings) -> Transcoded:
    """Decode ``item`` once and build its sample: 25 fps video, aligned audio features, metadata."""
    with open_media(item) as container:
        info = source_info(container)
        try:
            return _transcode_open(item, settings, container, info)
        except MediaError as error:
            error.source = info
            raise


def _transcode_open(item: VideoItem, settings: EncodeSettings, container: av.container.InputContainer,
                    info: SourceInfo) -> Transcoded:
    video_stream = container.streams.best("video")
    audio_stream = container.streams.best("audio")
    if video_stream is None:
        raise MediaError("no video stream", "audio only" if audio_stream is not None else "")
    if audio_stream is None:
        raise MediaError("no audio stream")
    for stream in (video_stream, audio_stream):
        stream.codec_context.thread_count = settings.threads
    video = VideoResampler(settings.short_side, settings.crf, settings.preset, settings.threads)
    audio = AudioCollector()
    errors = decode_streams(container, video_stream, audio_stream, video, audio)
    try:
        encoded = video.finish()
    except ValueError as error:
        raise MediaError("corrupt", errors[-1] if errors else "no decodable video frames") from error
    if encoded.frames < settings.min_duration * VIDEO_FPS:
        raise MediaError("too short", f"{encoded.frames / VIDEO_FPS:.2f} s < {settings.min_duration} s")
    signal = audio.finish()
    if audio.start_s is None or len(signal) == 0:
        raise MediaError("corrupt", errors[-1] if errors else "no decodable audio")
    aligned, padded = align_to_video(signal, audio.start_s, encoded.start_s, encoded.frames)
    if padded > len(aligned) - settings.min_duration * AUDIO_SAMPLE_RATE:
        raise MediaError("audio too short", f"covers {(len(aligned) - padded) / AUDIO_SAMPLE_RATE:.2f} s")
    level = rms_dbfs(aligned)
    if level < SILENCE_DBFS:
        raise MediaError("silent audio", f"RMS {level:.0f} dBFS")
    if settings.mp3:
        aligned = mp3_round_trip(aligned, settings.mp3_bitrate)
    fbank = log_filterbank(aligned).astype(FBANK_DTYPE)
    if round(video.rotation) % 180 != 0:  # report the displayed size, as the stored video shows it
        info = replace(info, width=info.height, height=info.width)
    meta = SampleMeta(
        key=item.key, source=item.relpath, label=item.label,
        duration_s=encoded.frames / VIDEO_FPS, source_start_s=encoded.start_s, frames=encoded.frames,
        fps=info.fps or 0.0,
        width=info.width or 0, height=info.height or 0, stored_width=encoded.width, stored_height=encoded.height,
        audio_sample_rate=info.audio_sample_rate or 0, audio_channels=info.audio_channels or 0,
        audio_pad_s=padded / AUDIO_SAMPLE_RATE, mp3=settings.mp3,
    )
    return Transcoded(Sample(item.key, encoded.data, fbank, meta), info, len(errors))


def decode_streams(container: av.container.InputContainer, video_stream: av.VideoStream,
                   audio_stream: av.AudioStream, video: VideoResampler, audio: AudioCollector) -> list[str]:
    """Demux and decode both streams into their subsamplers; returns the errors met on the way.

    Like the ffmpeg command line, a corrupt packet is skipped rather than ending the file, and a container
    that breaks off (a truncated file) keeps what was read before; too many bad packets make the file fail.
    Whether what was decoded is enough is decided by the caller.
    """
    errors: list[str] = []
    try:
        for packet in container.demux(video_stream, audio_stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as error:
                errors.append(str(error))
                if len(errors) > MAX_DECODE_ERRORS:
                    raise MediaError("corrupt", f"more than {MAX_DECODE_ERRORS} undecodable packets") from error
                continue
            for frame in frames:
                if packet.stream is video_stream:
                    video.push(frame)
                else:
                    audio.push(frame)
    except av.FFmpegError as error:
        errors.append(str(error))
    return errors
