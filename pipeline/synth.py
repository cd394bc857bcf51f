"""Synthetic audio-visual data whose only audio-video link is timing.

Each generated MP4 (H.264 + AAC) shows a disc on a plain background and plays a quiet noise floor. At random,
irregular event times the disc jumps to a new position and flashes (to the background's complementary colour)
while the whole background lights up,
and at exactly the same times a tone burst sounds. Colours and pitch are drawn independently per video, so
nothing but the timing of the events ties the two streams together: a model can only tell a synchronized clip
from a shifted one by learning when things happen. The event onset times are stored as JSON in the container's
``comment`` metadata.

Two options change this, and only when used (the default output is unchanged):

* ``audio_offset``: the sound is shifted against the picture by that many seconds (positive: the audio is late,
  it lags the video), to make test files with a known true offset for `avts-sync`. Timestamps are untouched:
  the shift is in the content, as in a badly synchronized recording, so ingestion does not undo it.
* ``classes``: video ``i`` belongs to class ``i % classes`` and goes to the folder ``class_XX/``; the class sets
  the disc's hue family and the tone's pitch band, so labels can be learned from either stream (probing,
  fine-tuning). Timing stays random and unrelated to the class.
"""

from __future__ import annotations

import colorsys
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avts.config_cli import option, validate
from avts.cpus import usable_cpus

METADATA_KEY = "avts_synth"
METADATA_VERSION = 1

TONE_HZ = (300.0, 1500.0)
TONE_AMPLITUDE = 0.5
NOISE_AMPLITUDE = 0.01
ATTACK_S = 0.005
RELEASE_S = 0.03
PIXEL_NOISE = 3.0
DISC_RADIUS = 0.15  # fraction of the frame size
BACKGROUND_FLASH = 60.0  # added to the background's RGB during an event
MIN_CONTRAST = 120  # L1 distance between RGB colours that must stay visible
AUDIO_BIT_RATE = 64_000
MAX_CLASSES = 100  # class folders are class_00 .. class_99
CLASS_SATURATION = (0.6, 1.0)  # HSV saturation and value of a class's disc colours
CLASS_VALUE = (0.6, 1.0)
# BT.601 limited-range RGB to Y, Cb, Cr weights, scaled by 256 (as in the classic integer formula).
_LUMA = np.array([66, 129, 25], np.int32)
_CB = np.array([-38, -74, 112], np.int32)
_CR = np.array([112, -94, -18], np.int32)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate: ``videos`` files of ``duration`` seconds into ``out``; `avts-synth`'s flags."""

    out: Path = option(help="output folder")
    videos: int = option(help="number of videos")
    duration: float = option(6.0, help="seconds per video")
    size: int = option(128, help="frame width and height in pixels (a multiple of 4)")
    fps: int = option(25, help="frame rate")
    sample_rate: int = option(16000, help="audio sample rate, Hz")
    seed: int = option(0, help="random seed (the same seed gives the same files)")
    workers: int = option(factory=usable_cpus, help="parallel processes (default: the CPUs this process may use)")
    min_gap: float = option(0.25, help="shortest time between event onsets, seconds")
    max_gap: float = option(0.7, help="longest time between event onsets, seconds")
    event: float = option(0.12, help="duration of one event (flash and tone burst), seconds")
    audio_offset: float = option(
        0.0,
        help="shift of the sound against the picture, seconds; positive: the audio "
        "is late (lags the video). Stored in the metadata",
    )
    classes: int | None = option(
        None,
        help="put the videos into this many class folders class_XX/, the class "
        "setting the disc's hue family and the tone's pitch band (unset: no "
        "classes, one folder)",
    )

    def __post_init__(self) -> None:
        validate(
            [
                (self.videos >= 0 and self.workers >= 1, "need --videos ≥ 0 and --workers ≥ 1"),
                (
                    self.size >= 16 and self.size % 4 == 0,
                    f"--size must be a multiple of 4 and at least 16, not {self.size}",
                ),
                (
                    0 < self.event < self.min_gap <= self.max_gap,
                    "need 0 < --event < --min-gap ≤ --max-gap, so that events do not overlap",
                ),
                (
                    self.duration > 0 and self.fps > 0 and self.sample_rate > 0,
                    "--duration, --fps and --sample-rate must be positive",
                ),
                (abs(self.audio_offset) < self.duration, "--audio-offset must be shorter than --duration"),
                (self.classes is None or 1 <= self.classes <= MAX_CLASSES, f"--classes must be in 1..{MAX_CLASSES}"),
            ]
        )

    def class_of(self, index: int) -> int | None:
        """The class of video ``index`` (None without ``classes``)."""
        return None if self.classes is None else index % self.classes


@dataclass(frozen=True)
class _Scene:
    """Everything random about one video."""

    events: list[float]
    background: np.ndarray  # RGB uint8
    colour: np.ndarray  # RGB uint8, the disc at rest
    flash: np.ndarray  # RGB uint8, the disc during an event
    positions: np.ndarray  # (events + 1, 2) disc centres (x, y) in pixels; row i + 1 from event i on
    tone_hz: float


def class_folder(label: int) -> str:
    """The folder name of class ``label``: ``class_XX``."""
    return f"class_{label:02d}"


def video_path(out: Path, index: int, label: int | None = None) -> Path:
    """The file name of video ``index`` under ``out`` (in its class folder when it has a class ``label``)."""
    folder = Path(out) if label is None else Path(out) / class_folder(label)
    return folder / f"synth_{index:05d}.mp4"


def class_pitch_band(label: int, classes: int) -> tuple[float, float]:
    """The tone frequencies (Hz) of class ``label``: the ``label``-th of ``classes`` equal log-frequency bands of
    the full pitch range."""
    low, high = TONE_HZ
    ratio = high / low
    return low * ratio ** (label / classes), low * ratio ** ((label + 1) / classes)


def class_hue_range(label: int, classes: int) -> tuple[float, float]:
    """The disc hues (HSV hue in [0, 1)) of class ``label``: the ``label``-th of ``classes`` equal hue sectors."""
    return label / classes, (label + 1) / classes


def draw_events(rng: np.random.Generator, config: SynthConfig) -> list[float]:
    """Onset times in seconds, each ``min_gap`` to ``max_gap`` (uniform) after the previous one.

    The first follows the start of the video the same way, so no event is cut off at the start and none sits in
    the very first frame, where it could not show as a change. Every event ends before the video does. Times are
    rounded to 0.1 ms so that the stored values are exactly the ones rendered.
    """
    events: list[float] = []
    t = 0.0
    while True:
        t = round(t + rng.uniform(config.min_gap, config.max_gap), 4)
        if t + config.event > config.duration:
            return events
        events.append(t)


def _contrasting_colour(rng: np.random.Generator, *others: np.ndarray) -> np.ndarray:
    """A random RGB colour at least ``MIN_CONTRAST`` away from each of ``others``."""
    while True:
        colour = rng.integers(0, 256, 3).astype(np.uint8)
        if all(np.abs(colour.astype(int) - other).sum() >= MIN_CONTRAST for other in others):
            return colour


def _class_colour(rng: np.random.Generator, label: int, classes: int, *others: np.ndarray) -> np.ndarray:
    """A random RGB colour of class ``label``'s hue sector, at least ``MIN_CONTRAST`` away from each of ``others``."""
    while True:
        hue = rng.uniform(*class_hue_range(label, classes))
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*CLASS_SATURATION), rng.uniform(*CLASS_VALUE))
        colour = np.rint(np.array(rgb) * 255).astype(np.uint8)
        if all(np.abs(colour.astype(int) - other).sum() >= MIN_CONTRAST for other in others):
            return colour


def _draw_scene(config: SynthConfig, index: int) -> _Scene:
    """Draw events, colours, disc positions and pitch of video ``index``, from ``(seed, index)`` alone."""
    rng = np.random.default_rng([config.seed, index])
    events = draw_events(rng, config)
    background = rng.integers(0, 256, 3).astype(np.uint8)
    flash = 255 - background
    label = config.class_of(index)
    if label is None or config.classes is None:
        colour = _contrasting_colour(rng, background, flash)
    else:
        colour = _class_colour(rng, label, config.classes, background, flash)
    radius = DISC_RADIUS * config.size
    positions = rng.uniform(radius, config.size - radius, (len(events) + 1, 2))
    if label is None or config.classes is None:
        tone_hz = float(rng.uniform(*TONE_HZ))
    else:
        low, high = class_pitch_band(label, config.classes)
        tone_hz = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return _Scene(events, background, colour, flash, positions, tone_hz)


def _event_samples(config: SynthConfig, events: list[float]) -> list[tuple[int, int]]:
    """``[start, end)`` audio sample range of each event."""
    length = round(config.event * config.sample_rate)
    return [(round(t * config.sample_rate), round(t * config.sample_rate) + length) for t in events]


def _frame_of(sample: int, config: SynthConfig) -> int:
    """The video frame whose interval contains audio sample ``sample``."""
    return sample * config.fps // config.sample_rate


def _render_audio(config: SynthConfig, scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 audio: a noise floor plus an enveloped tone burst at each event, ``audio_offset`` late.

    A burst that the offset moves (partly) outside the video's duration is cut at the ends.
    """
    sr = config.sample_rate
    audio = rng.normal(0.0, NOISE_AMPLITUDE, round(config.duration * sr))
    burst_t = np.arange(round(config.event * sr)) / sr
    envelope = np.clip(np.minimum(burst_t / ATTACK_S, (config.event - burst_t) / RELEASE_S), 0.0, 1.0)
    burst = TONE_AMPLITUDE * envelope * np.sin(2 * math.pi * scene.tone_hz * burst_t)
    for start, end in _event_samples(config, [t + config.audio_offset for t in scene.events]):
        first, last = max(start, 0), min(end, len(audio))
        if first < last:
            audio[first:last] += burst[first - start : last - start]
    return audio.astype(np.float32)


def _frame_states(config: SynthConfig, scene: _Scene) -> Iterator[tuple[int, bool]]:
    """For each video frame: which row of ``scene.positions`` the disc is at, and whether it is flashing."""
    frames = round(config.duration * config.fps)
    position = np.zeros(frames, dtype=int)
    flashing = np.zeros(frames, dtype=bool)
    for i, (start, end) in enumerate(_event_samples(config, scene.events)):
        first, last = _frame_of(start, config), _frame_of(end - 1, config)
        position[first:] = i + 1
        flashing[first : last + 1] = True
    return zip(position.tolist(), flashing.tolist(), strict=True)


def _render_frames(config: SynthConfig, scene: _Scene, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """RGB uint8 frames: the disc on the background (both lit up during events), with mild pixel noise."""
    ys, xs = np.mgrid[0 : config.size, 0 : config.size] + 0.5
    radius = DISC_RADIUS * config.size
    for position, flashing in _frame_states(config, scene):
        cx, cy = scene.positions[position]
        disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        frame = np.broadcast_to(scene.background, (config.size, config.size, 3)).astype(np.float32)
        if flashing:  # the whole scene lights up too, so the event shows in any crop of the frame
            frame = frame + BACKGROUND_FLASH
        frame[disc] = scene.flash if flashing else scene.colour
        frame += PIXEL_NOISE * rng.standard_normal(frame.shape, dtype=np.float32)
        yield np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """Convert an RGB uint8 frame (H, W, 3) to PyAV's planar yuv420p layout (3H/2, W), BT.601 limited range.

    Integer arithmetic in numpy, because swscale's conversion (like a float matrix product) can round differently
    from call to call within a process, and the output must depend only on the seed. H and W must be multiples
    of 4. Chroma is computed from the sum of each 2x2 block.
    """
    height, width, _ = rgb.shape
    pixels = rgb.astype(np.int32)
    luma = ((pixels @ _LUMA + 128) >> 8) + 16
    blocks = pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2]
    cb, cr = (((blocks @ weights + 512) >> 10) + 128 for weights in (_CB, _CR))
    return np.concatenate([luma.ravel(), cb.ravel(), cr.ravel()]).astype(np.uint8).reshape(height * 3 // 2, width)


def _metadata(config: SynthConfig, index: int, scene: _Scene) -> str:
    """The JSON stored in the container's ``comment`` tag (``audio_offset_s`` and ``class`` only when used)."""
    optional: dict[str, float | int] = {}
    if config.audio_offset != 0:
        optional["audio_offset_s"] = config.audio_offset
    label = config.class_of(index)
    if label is not None:
        optional["class"] = label
    return json.dumps(
        {
            METADATA_KEY: METADATA_VERSION,
            "events": scene.events,
            "event_s": config.event,
            "duration_s": config.duration,
            "fps": config.fps,
            "sample_rate": config.sample_rate,
            "seed": config.seed,
            "index": index,
            "tone_hz": round(scene.tone_hz, 2),
            "background": scene.background.tolist(),
            "colour": scene.colour.tolist(),
            **optional,
        }
    )


def _encode(path: Path, config: SynthConfig, metadata: str, frames: Iterator[np.ndarray], audio: np.ndarray) -> None:
    """Write an MP4 with one H.264 video stream and one mono AAC stream."""
    with av.open(str(path), "w", format="mp4") as container:
        container.metadata["comment"] = metadata
        video = container.add_stream("libx264", rate=config.fps)
        video.width = video.height = config.size
        video.pix_fmt = "yuv420p"
        # A key frame every second, as in the shards. Repeatable output: one thread keeps the bitstream independent
        # of the machine, and x264's macroblock tree (with B-frames, at small sizes) does not always encode the
        # same input to the same bits within one process.
        video.options = {
            "preset": "veryfast",
            "crf": "23",
            "g": str(config.fps),
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        sound = container.add_stream("aac", rate=config.sample_rate, layout="mono")
        sound.bit_rate = AUDIO_BIT_RATE
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        step = sound.codec_context.frame_size
        for start in range(0, len(audio), step):
            chunk = av.AudioFrame.from_ndarray(audio[None, start : start + step], format="fltp", layout="mono")
            chunk.sample_rate = config.sample_rate
            chunk.pts = start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())


def write_video(config: SynthConfig, index: int) -> Path:
    """Generate video ``index`` unless it already exists; returns its path.

    The file is written under a temporary name and renamed when complete, so an existing file is a whole one.
    """
    path = video_path(config.out, index, config.class_of(index))
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = _draw_scene(config, index)
    noise_rng = np.random.default_rng([config.seed, index, 1])
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    audio = _render_audio(config, scene, noise_rng)
    _encode(tmp, config, _metadata(config, index, scene), _render_frames(config, scene, noise_rng), audio)
    tmp.replace(path)
    return path


def generate(config: SynthConfig, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Generate ``config.videos`` videos into ``config.out``; returns their paths in index order.

    Runs ``config.workers`` processes when it is above 1. Videos that already exist are kept, so an interrupted
    run resumes. ``progress``, when given, is called with the number of videos done after each one finishes.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [video_path(out, i, config.class_of(i)) for i in range(config.videos)]
    report = progress or (lambda done: None)
    if config.workers <= 1:
        for i in range(config.videos):
            write_video(config, i)
            report(i + 1)
        return paths
    # spawn, not Linux's default fork: forking a process that runs threads (torch's, a decoder's) can hand the
    # child a lock held for ever (seen: a test session hung in the pool's first task)
    with ProcessPoolExecutor(max_workers=config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(write_video, config, i) for i in range(config.videos)]
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()
            report(done)
    return paths


def read_metadata(path: Path) -> dict:
    """The JSON metadata that :func:`generate` stored in ``path``; ``ValueError`` if it is not a synth video."""
    with av.open(str(path)) as container:
        comment = container.metadata.get("comment", "")
    try:
        data = json.loads(comment)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get(METADATA_KEY) != METADATA_VERSION:
        raise ValueError(f"{path} is not an avts-synth video")
    return data


def read_events(path: Path) -> list[float]:
    """Event onset times in seconds stored in a generated video (times of the picture's events)."""
    return [float(t) for t in read_metadata(path)["events"]]


def read_audio_offset(path: Path) -> float:
    """The true audio offset of a generated video in seconds (positive: the audio lags the video)."""
    return float(read_metadata(path).get("audio_offset_s", 0.0))
