"""Pictures of what the pipeline made, to see with one's own eyes that sound and picture line up.

* :func:`draw_sheet` — a contact sheet of one shard sample: every stored frame of a time window as a film
  strip, the picture's brightness and the sound's loudness, and the log filterbank, all on one time axis
  (the shard's clock: frame ``k`` at ``k / 25`` s, feature frame ``i`` at ``i / 100`` s). For `avts-synth`
  videos the event times their source file carries (MP4 ``comment``, read with
  :func:`pipeline.synth.read_events` from ``--src``, the folder that was ingested) are marked; the shard
  itself is not changed for this. :func:`onset_lag` measures how far the sound's onsets sit from the
  picture's, over the whole sample.
* :func:`draw_batch` — a few training pairs exactly as `avts-train` makes them: clips from the real loader
  (:mod:`trainer.data`), audio windows from the real pair sampler (:mod:`trainer.sampler`): positives, easy
  negatives (another video's audio) and hard negatives (the same video's audio ≥ ``hard_gap`` away), each
  with where its audio was taken from.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import webdataset as wds

from avts.atomic import atomic_path
from avts.schema import FEATURE_RATE, FEATURES_PER_FRAME, VIDEO_FPS, Sample, decode_sample
from pipeline.synth import read_metadata
from trainer.augment import yuv_to_rgb
from trainer.clip_decode import decode_clip, split_planes
from trainer.config import TrainConfig
from trainer.data import WINDOW, Batch, LoaderSpec, build_pipeline
from trainer.sampler import EASY, HARD, POSITIVE, SUPER_HARD, NegativeMix, PairBatch, PairSampler

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpecFromSubplotSpec

KIND_NAMES = {POSITIVE: "positive", EASY: "easy negative", HARD: "hard negative", SUPER_HARD: "super-hard negative"}
MAX_LAG_S = 0.5  # onset lags searched by onset_lag, either way
SHEET_WIDTH_IN = 16.0


class InspectError(Exception):
    """The picture cannot be drawn; the message says why."""


AUDIO_CONTEXT_S: float = TrainConfig.audio_context  # the pictures use avts-train's defaults
HARD_GAP_S: float = TrainConfig.hard_gap


@dataclass(frozen=True)
class EventTimes:
    """Event onsets of an `avts-synth` video on the shard's clock (seconds), picture and sound separately
    (they differ by the video's ``audio_offset_s``), and how long an event lasts."""

    picture: list[float]
    sound: list[float]
    duration_s: float


def iter_samples(shards: list[str]) -> Iterator[Sample]:
    """Every sample of the shards, in order, decoded (video still encoded); a shard that is not a readable tar
    (damaged, truncated) is an :class:`InspectError` once the samples before the damage are read."""
    pipeline = wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples())
    try:
        for raw in pipeline:
            try:
                sample = decode_sample(raw)
            except KeyError as error:  # a tar, but not of avts-ingest samples
                raise InspectError(f"{', '.join(shards)}: not an avts-ingest shard ({error.args[0]})") from None
            yield sample
    except (tarfile.ReadError, EOFError, UnicodeDecodeError) as error:
        reason = error.args[0] if error.args else type(error).__name__  # webdataset appends the stream and path
        raise InspectError(
            f"{', '.join(shards)}: not a readable shard (a damaged or truncated tar: {reason})"
        ) from None


def read_sample(shards: list[str], key: str | None = None) -> Sample:
    """The sample called ``key`` (the first one when ``key`` is None); :class:`InspectError` when absent."""
    seen: list[str] = []
    for sample in iter_samples(shards):
        if key is None or sample.key == key:
            return sample
        seen.append(sample.key)
    if key is None:
        raise InspectError(f"no samples in {', '.join(shards)}")
    listed = ", ".join(seen[:8]) + (", ..." if len(seen) > 8 else "")
    raise InspectError(f"no sample {key!r} in {', '.join(shards)}; it holds {len(seen)}: {listed}")


def event_times(sample: Sample, src: Path | None) -> tuple[EventTimes | None, str]:
    """The sample's `avts-synth` event times on the shard's clock, from its source file under ``src`` (the
    ingested folder); else None and why not."""
    if src is None:
        return None, "no event times: pass --src, the folder that was ingested, to mark avts-synth events"
    source = Path(src) / sample.meta.source
    if not source.is_file():
        return None, f"no event times: source {source} not found"
    try:
        metadata = read_metadata(source)
    except ValueError:
        return None, f"no event times: {source.name} is not an avts-synth video"
    shift = sample.meta.source_start_s  # source time shown by stored frame 0
    picture = [float(t) - shift for t in metadata["events"]]
    offset = float(metadata.get("audio_offset_s", 0.0))
    return EventTimes(picture, [t + offset for t in picture], float(metadata["event_s"])), f"events from {source}"


def rgb_frames(video: bytes, start: int, count: int) -> np.ndarray:
    """Frames ``[start, start + count)`` of a stored video as ``(T, H, W, 3)`` floats in [0, 1], decoded and
    converted as the trainer does (:func:`trainer.clip_decode.decode_clip`, BT.601)."""
    y, u, v = split_planes(decode_clip(video, start, count))
    return planes_to_rgb(torch.from_numpy(y), torch.from_numpy(u), torch.from_numpy(v)).numpy()


def planes_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """uint8 planes ``(T, H, W)``, ``(T, H/2, W/2)`` → ``(T, H, W, 3)`` RGB in [0, 1] (chroma repeated 2×2)."""

    def upsample(plane: torch.Tensor) -> torch.Tensor:
        return plane.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)

    rgb = yuv_to_rgb(y[None].float(), upsample(u)[None].float(), upsample(v)[None].float())  # (1, 3, T, H, W)
    return rgb[0].permute(1, 2, 3, 0)


def brightness(frames: np.ndarray) -> np.ndarray:
    """Mean brightness of each ``(T, H, W, 3)`` frame."""
    return frames.mean(axis=(1, 2, 3))


def loudness(fbank: np.ndarray) -> np.ndarray:
    """Mean log filterbank energy of each feature frame."""
    return fbank.astype(np.float32).mean(axis=1)


def onset_lag(frame_brightness: np.ndarray, feature_loudness: np.ndarray) -> float:
    """Seconds by which the sound's onsets follow the picture's (negative: the sound leads), within
    ±``MAX_LAG_S``: the shift maximizing the correlation of the two onset signals (positive jumps of
    brightness per frame, of loudness per feature frame, both at 100 per second)."""
    picture = np.repeat(np.diff(frame_brightness, prepend=frame_brightness[:1]), FEATURES_PER_FRAME)
    sound = np.diff(feature_loudness, prepend=feature_loudness[:1])
    length = min(len(picture), len(sound))
    picture = _standardized(np.clip(picture[:length], 0, None))
    sound = _standardized(np.clip(sound[:length], 0, None))
    max_shift = min(round(MAX_LAG_S * FEATURE_RATE), length - 1)
    shifts = range(-max_shift, max_shift + 1)
    scores = [
        float(np.dot(picture[max(0, -s) : length - max(0, s)], sound[max(0, s) : length - max(0, -s)])) for s in shifts
    ]
    return shifts[int(np.argmax(scores))] / FEATURE_RATE


def _standardized(signal: np.ndarray) -> np.ndarray:
    spread = signal.std()
    return (signal - signal.mean()) / spread if spread > 0 else signal * 0.0


def _scaled(signal: np.ndarray) -> np.ndarray:
    low, high = float(signal.min()), float(signal.max())
    return (signal - low) / (high - low) if high > low else signal * 0.0


def draw_sheet(
    sample: Sample,
    out: Path,
    start_s: float = 0.0,
    seconds: float = 2.0,
    events: EventTimes | None = None,
    note: str = "",
) -> tuple[Path, float]:
    """Draw the contact sheet of ``sample`` over ``[start_s, start_s + seconds)`` into ``out`` (PNG);
    returns the path and the onset lag of the whole sample (:func:`onset_lag`)."""
    total = min(sample.meta.frames, len(sample.fbank) // FEATURES_PER_FRAME)
    if round(start_s * VIDEO_FPS) >= total:  # it used to draw the last frame instead, without a word
        raise InspectError(
            f"--start {start_s:g} s is past the end of sample {sample.key!r} ({total / VIDEO_FPS:.2f} s stored)"
        )
    first = max(round(start_s * VIDEO_FPS), 0)
    count = max(1, min(round(seconds * VIDEO_FPS), total - first))
    everything = rgb_frames(sample.video, 0, total)
    lag = onset_lag(brightness(everything), loudness(sample.fbank))
    frames = everything[first : first + count]
    begin, end = first / VIDEO_FPS, (first + count) / VIDEO_FPS
    fbank = sample.fbank[first * FEATURES_PER_FRAME : (first + count) * FEATURES_PER_FRAME].astype(np.float32)

    height, width = frames.shape[1:3]
    strip_height = max(SHEET_WIDTH_IN * 0.86 / count * height / width, 0.2)  # square frames
    figure, axes = plt.subplots(
        3,
        1,
        sharex=True,
        figsize=(SHEET_WIDTH_IN, strip_height + 3.4),
        gridspec_kw={"height_ratios": [strip_height * 1.3, 1.2, 1.6]},
    )
    strip, curves, spectrum = axes
    for index, frame in enumerate(frames):
        time = (first + index) / VIDEO_FPS
        strip.imshow(frame, extent=(time, time + 1 / VIDEO_FPS, 0, 1), aspect="auto")
    strip.set(yticks=[], ylim=(0, 1), ylabel="frames")
    strip.set_box_aspect(height / width / count)  # square frames; the slot above leaves room for it
    feature_times = (first * FEATURES_PER_FRAME + np.arange(len(fbank))) / FEATURE_RATE
    curves.step(
        (first + np.arange(count)) / VIDEO_FPS,
        _scaled(brightness(frames)),
        where="post",
        label="picture: brightness",
        color="tab:orange",
    )
    curves.plot(feature_times, _scaled(loudness(fbank)), label="sound: loudness", color="tab:blue", lw=0.9)
    curves.set(yticks=[], ylabel="scaled")
    spectrum.imshow(
        fbank.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(begin, begin + len(fbank) / FEATURE_RATE, 0, fbank.shape[1]),
    )
    spectrum.set(
        ylabel="filter (40, log energy)",
        xlabel="seconds on the shard's clock (frame k at k/25 s, feature frame i at i/100 s)",
        xlim=(begin, end),
    )
    if events is not None:
        for axis in axes:
            for t in events.picture:
                if begin <= t < end:
                    axis.axvline(t, color="tab:orange", lw=1.2, ls="-", zorder=3)
            for t in events.sound:
                if begin <= t < end:
                    axis.axvline(t, color="cyan", lw=1.0, ls="--", zorder=3)
        curves.plot([], [], color="tab:orange", lw=1.2, label="event onset, picture\n(source metadata)")
        curves.plot([], [], color="cyan", lw=1.0, ls="--", label="event onset, sound\n(source metadata)")
    curves.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    label = f", label {sample.meta.label}" if sample.meta.label else ""
    figure.suptitle(
        f"{sample.key} ({sample.meta.source}{label}): {sample.meta.stored_width}×"
        f"{sample.meta.stored_height}, {sample.meta.duration_s:.2f} s. Over the whole sample the sound's "
        f"onsets follow the picture's by {lag * 1000:+.0f} ms (resolution ±1 frame = 40 ms)\n{note}",
        fontsize=9,
    )
    _save(figure, out)
    return out, lag


@dataclass(frozen=True)
class PairView:
    """One training pair as drawn: its kind, the clip's video, where its audio came from."""

    row: int  # batch row of the clip
    kind: str  # "positive", "easy negative", "hard negative" or "super-hard negative"
    clip_key: str
    audio_key: str
    offset_s: float | None  # start of the audio window minus start of the clip (same video only)


def describe_pairs(batch: Batch, made: PairBatch) -> list[PairView]:
    """What the sampler made for each row of ``batch``, positives first, then easy, hard, super-hard."""
    views = []
    for row in range(len(batch.keys)):
        kind, source = int(made.kind[row]), int(made.source[row])
        same_video = int(batch.video_id[source]) == int(batch.video_id[row])
        offset = (int(made.audio_start[row]) - int(batch.clip_start[row])) / FEATURE_RATE if same_video else None
        views.append(PairView(row, KIND_NAMES[kind], batch.keys[row], batch.keys[source], offset))
    order = list(KIND_NAMES.values())
    return sorted(views, key=lambda view: (order.index(view.kind), view.row))


def draw_batch(
    shards: list[str],
    out: Path,
    pairs: int = 6,
    mix: NegativeMix | None = None,
    seed: int = 0,
    hard_gap_s: float = HARD_GAP_S,
    audio_context_s: float = AUDIO_CONTEXT_S,
) -> list[PairView]:
    """Draw ``pairs`` training pairs as `avts-train` makes them (real loader and pair sampler) into ``out``;
    returns what each drawn pair is."""
    mix = mix or NegativeMix(easy=0.5, hard=0.5)
    spec = LoaderSpec(
        shards,
        pairs,
        VIDEO_FPS,
        round(audio_context_s * FEATURE_RATE),
        seed,
        workers=0,
        shuffle_buffer=100,
        training=True,
    )
    batch = next(iter(build_pipeline(spec, epoch=0)), None)
    if batch is None:
        raise InspectError(f"{', '.join(shards)} hold fewer than {pairs} usable samples: pass fewer --pairs")
    sampler = PairSampler(WINDOW, round(hard_gap_s * FEATURE_RATE))
    made = sampler.sample(
        batch.feats, batch.valid, batch.clip_start, mix, torch.Generator().manual_seed(seed), video_id=batch.video_id
    )
    views = describe_pairs(batch, made)
    columns = 2
    rows = (pairs + columns - 1) // columns
    figure = plt.figure(figsize=(7 * columns, 2.4 * rows))
    grid = figure.add_gridspec(rows, columns, hspace=0.55, wspace=0.12)
    for place, view in enumerate(views):
        cell = grid[place // columns, place % columns].subgridspec(3, 1, hspace=0.1)
        _draw_pair(figure, cell, batch, made, view)
    negatives = ", ".join(f"{name} {share:g}" for name, share in dataclasses.asdict(mix).items() if share > 0)
    figure.suptitle(
        f"{pairs} training pairs as avts-train makes them: real loader (one random 1-s clip per video) "
        f"and pair sampler (half positives; negatives {negatives}; hard gap {hard_gap_s:g} s); seed {seed}",
        fontsize=9,
    )
    _save(figure, out, dpi=70)
    return views


def _draw_pair(figure: Figure, cell: GridSpecFromSubplotSpec, batch: Batch, made: PairBatch, view: PairView) -> None:
    """One pair: the clip's frames, the audio aligned with the clip, and the audio the sampler paired it with."""
    row = view.row
    source, start, clip = int(made.source[row]), int(made.audio_start[row]), int(batch.clip_start[row])
    frames = planes_to_rgb(batch.y[row], batch.u[row], batch.v[row]).numpy()
    feats = batch.feats.float().numpy()
    if view.offset_s is None:
        where = f"audio of another video, {view.audio_key}"
    elif view.offset_s == 0:
        where = "its own audio, aligned"
    else:
        where = f"its own audio, {view.offset_s:+.2f} s from the clip"
    axes = [figure.add_subplot(cell[i]) for i in range(3)]
    for index, frame in enumerate(frames):
        axes[0].imshow(frame, extent=(index / VIDEO_FPS, (index + 1) / VIDEO_FPS, 0, 1), aspect="auto")
    axes[0].set_box_aspect(frames.shape[1] / frames.shape[2] / len(frames))  # square frames
    axes[0].set_title(f"{view.kind}: clip of {view.clip_key}; {where}", fontsize=8)
    aligned = feats[row, clip : clip + WINDOW]
    paired = feats[source, start : start + WINDOW]
    for axis, window, name in ((axes[1], aligned, "aligned"), (axes[2], paired, "paired")):
        axis.imshow(
            window.T, origin="lower", aspect="auto", cmap="magma", extent=(0, WINDOW / FEATURE_RATE, 0, window.shape[1])
        )
        axis.set_ylabel(name, fontsize=7)
    for axis in axes:
        axis.set(xlim=(0, 1), yticks=[])
        axis.tick_params(labelsize=7)
    for axis in axes[:2]:
        axis.set_xticks([])
    axes[2].set_xlabel("seconds into the clip", fontsize=7)


def _save(figure: Figure, out: Path, dpi: int = 80) -> None:
    """Write the figure as a PNG (atomically) and close it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(figure)
