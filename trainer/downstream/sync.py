"""`avts-sync`: the audio–video offset of a file, found with a trained AVTS model (SyncNet-style search).

The file is prepared exactly as `avts-ingest` prepares a training video (:func:`pipeline.transcode.transcode`:
25 fps, autorotate, short-side scale, H.264; 16 kHz mono log filterbank aligned to the first video frame), and
the clips are decoded and centre-cropped as the validation does (:func:`trainer.data.square_crop`,
:func:`trainer.step.make_video` with ``train=False``); audio windows are Z-normalized with the checkpoint's
stats. Then, for 1-s video windows every ``hop`` seconds, the distance between the clip's embedding and the
embedding of the audio window shifted by every offset in ``[-range, +range]`` (``step`` apart, 10 ms = one
feature frame at the finest, 40 ms = one video frame) is computed; the curves are averaged over the windows
(one window's curve has a local minimum at every event of a periodic scene; many windows leave the true one)
and the offset is the argmin. Confidence is the median minus the minimum of the averaged curve (SyncNet's).

Sign convention: the offset is how much later the audio that matches the picture comes. **Positive: the audio
lags (is late against) the video**, as with ``avts-synth --audio-offset`` > 0; to fix a file, delay the video
(or advance the audio) by the offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from avts.atomic import atomic_path
from avts.config_cli import option, output_folder_checks, validate
from avts.console import printable
from avts.schema import FBANK_FILTERS, FEATURE_RATE, FEATURES_PER_FRAME, VIDEO_FPS, Sample
from pipeline.config import MAX_SHORT_SIDE, IngestConfig
from pipeline.discover import VideoItem
from pipeline.transcode import MediaError, transcode
from trainer.clip_decode import decode_clip
from trainer.data import WINDOW, Example, collate, square_crop
from trainer.distributed import device_check
from trainer.loss import pair_distance
from trainer.models import AVTSModel
from trainer.step import InputSettings, autocast_for, make_video

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SIGN_CONVENTION = "positive offset: the audio lags (is late against) the video"
AGGREGATES = ("mean", "median")


@dataclass(frozen=True)
class SyncConfig:
    """What `avts-sync` needs; its flags are made from these fields (the videos are positional)."""

    checkpoint: Path = option(help="avts-train checkpoint")
    videos: tuple[Path, ...] = option((), help="video files", cli=False)
    range: float = option(2.0, help="largest offset searched, seconds, both ways (shrunk for a short file)")
    step: float = option(
        0.01, help="offset step, seconds: a multiple of 0.01 (one audio feature frame); 0.04 = one video frame"
    )
    hop: float = option(0.5, help="seconds between the starts of the 1-s video windows")
    aggregate: str = option("mean", help="how the windows' distance curves are combined", choices=AGGREGATES)
    short_side: int = option(
        128, help="short side the video is scaled to: use the --short-side of the ingest that made the training shards"
    )
    mp3: bool = option(False, help="MP3 round-trip of the audio, if the training shards were ingested with --mp3")
    batch_size: int = option(32, help="windows per forward pass")
    device: str = option("auto", help="auto, cuda or cpu")
    out: Path = option(Path("avts-sync"), help="folder for sync.json and one <video>.png curve per file")
    json: bool = option(False, help="print the JSON results on stdout (the table goes to stderr)")

    def __post_init__(self) -> None:
        steps = self.step * FEATURE_RATE
        validate(
            [
                device_check(self.device),
                *output_folder_checks(self.out),
                (math.isfinite(self.range) and self.range > 0, "--range must be a finite number > 0"),
                (self.step > 0 and abs(steps - round(steps)) < 1e-6, "--step must be a positive multiple of 0.01 s"),
                (self.step <= self.range, "--step must not exceed --range"),
                (self.hop > 0, "--hop must be > 0"),
                (self.batch_size >= 1, "--batch-size must be ≥ 1"),
                (
                    16 <= self.short_side <= MAX_SHORT_SIDE and self.short_side % 2 == 0,
                    f"--short-side must be an even number in [16, {MAX_SHORT_SIDE}]",
                ),
            ]
        )

    @property
    def shift_step(self) -> int:
        """The offset step in feature frames."""
        return round(self.step * FEATURE_RATE)

    @property
    def max_shift(self) -> int:
        """The largest offset searched in feature frames, a multiple of the step."""
        return round(self.range * FEATURE_RATE) // self.shift_step * self.shift_step


class SyncError(Exception):
    """This file cannot be searched; the message says why (the other files go on)."""


@dataclass
class SyncResult:
    """The offset of one file and the curve it was read from."""

    path: str
    offset_s: float  # positive: the audio lags the video
    offset_frames: float  # the same in 25-fps video frames
    confidence: float  # median minus minimum of the curve
    min_distance: float
    median_distance: float
    window_agreement: float  # share of windows whose own minimum is within one video frame of the offset
    windows: int
    range_s: float  # the range searched (smaller than asked for a short file)
    duration_s: float
    offsets_s: list[float] = field(repr=False)
    distances: list[float] = field(repr=False)
    note: str | None = None
    plot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``ok``."""
        return {"ok": True, **asdict(self)}


def prepare(path: Path, config: SyncConfig) -> Sample:
    """The file as `avts-ingest` would store it (video bytes + aligned features); :class:`SyncError` if it cannot
    be, with the ingest's reason (no audio, too short, silent...)."""
    minimum = (WINDOW + 2 * config.shift_step) / FEATURE_RATE
    settings = IngestConfig(
        src=path, short_side=config.short_side, min_duration=minimum, mp3=config.mp3
    ).encode_settings()
    item = VideoItem(key=path.stem, path=path.absolute(), relpath=path.name, label=None, split="test", stats_rank=None)
    try:
        return transcode(item, settings).sample
    except FileNotFoundError:
        raise SyncError("no such file") from None
    except MediaError as error:
        raise SyncError(str(error)) from None


def usable_range(feature_frames: int, max_shift: int, step: int) -> int:
    """The largest searchable offset (feature frames, a multiple of ``step``, at most ``max_shift``) for which one
    1-s window and all its shifted audio windows fit in the file; 0 when not even ``step`` fits."""
    shift = max_shift
    if shift > feature_frames:  # no offset beyond the file's length fits: start below it (same multiples of step)
        shift -= math.ceil((shift - feature_frames) / step) * step
    while shift >= step:
        first_clip = math.ceil(shift / FEATURES_PER_FRAME) * FEATURES_PER_FRAME
        if first_clip + WINDOW + shift <= feature_frames:
            return shift
        shift -= step
    return 0


def window_starts(feature_frames: int, shift: int, hop_frames: int) -> list[int]:
    """Start frames of the video windows whose audio windows at every offset up to ``shift`` fit in the file."""
    first = math.ceil(shift / FEATURES_PER_FRAME)
    last = (feature_frames - WINDOW - shift) // FEATURES_PER_FRAME
    return list(range(first, last + 1, hop_frames))


@torch.no_grad()
def embed_clips(
    model: AVTSModel, sample: Sample, starts: Sequence[int], settings: InputSettings, device: torch.device
) -> torch.Tensor:
    """``(len(starts), E)`` embeddings of the 1-s clips starting at these video frames, centre-cropped."""
    no_audio = np.zeros((1, FBANK_FILTERS), dtype=np.float16)
    examples = []
    for start in starts:
        y, u, v = square_crop(decode_clip(sample.video, start, VIDEO_FPS), None)
        examples.append(Example(sample.key, y, u, v, no_audio, 0, 0))
    batch = collate(examples).to(device)
    with autocast_for(device):
        return model.embed_video(make_video(batch, settings, train=False, generator=None)).float()


@torch.no_grad()
def embed_audio_windows(
    model: AVTSModel, fbank: torch.Tensor, positions: Sequence[int], settings: InputSettings, batch_size: int
) -> torch.Tensor:
    """``(len(positions), E)`` embeddings of the normalized 1-s feature windows starting at these feature frames."""
    out = []
    for first in range(0, len(positions), batch_size):
        index = torch.tensor(positions[first : first + batch_size], device=fbank.device)[:, None]
        windows = fbank[index + torch.arange(WINDOW, device=fbank.device)]  # (B, 100, 40)
        audio = settings.normalizer(windows.transpose(1, 2).unsqueeze(1))
        with autocast_for(fbank.device):
            out.append(model.embed_audio(audio).float())
    return torch.cat(out)


def distance_curves(
    video_emb: torch.Tensor,
    audio_emb: torch.Tensor,
    positions: np.ndarray,
    clip_features: np.ndarray,
    shifts: np.ndarray,
) -> torch.Tensor:
    """``(windows, shifts)`` distances between each clip (starting at feature frame ``clip_features[k]``) and
    the audio window ``shifts[j]`` frames later; ``audio_emb[i]`` embeds the window starting at ``positions[i]``
    (sorted), which must hold every needed start."""
    needed = clip_features[:, None] + shifts[None, :]
    index = np.searchsorted(positions, needed)
    if not np.array_equal(positions[np.minimum(index, len(positions) - 1)], needed):
        raise ValueError("an audio window needed by the curves was not embedded")
    audio = audio_emb[torch.from_numpy(index).to(audio_emb.device)]  # (K, S, E)
    return pair_distance(video_emb[:, None, :].expand_as(audio), audio)


@dataclass
class OffsetEstimate:
    """The minimum of the combined distance curve."""

    best: int  # index into the shifts
    curve: np.ndarray  # combined over windows
    confidence: float
    agreement: float


def find_offset(curves: np.ndarray, shifts: np.ndarray, aggregate: str = "mean") -> OffsetEstimate:
    """Combine the windows' curves (mean or median), take the argmin, and say how sure that is: the curve's median
    minus its minimum, and the share of windows whose own argmin is within one video frame of it."""
    curve = curves.mean(axis=0) if aggregate == "mean" else np.median(curves, axis=0)
    best = int(np.argmin(curve))
    own = shifts[np.argmin(curves, axis=1)]
    agreement = float(np.mean(np.abs(own - shifts[best]) <= FEATURES_PER_FRAME))
    return OffsetEstimate(best, curve, float(np.median(curve) - curve[best]), agreement)


def sync_sample(
    model: AVTSModel, sample: Sample, settings: InputSettings, config: SyncConfig, device: torch.device, path: str = ""
) -> SyncResult:
    """Search the offset of a prepared file, ``path`` naming it in the result (see the module docstring)."""
    frames = min(sample.meta.frames, len(sample.fbank) // FEATURES_PER_FRAME)
    features = frames * FEATURES_PER_FRAME
    shift = usable_range(features, config.max_shift, config.shift_step)
    if shift == 0:
        needed = WINDOW / FEATURE_RATE + 2 * config.step
        raise SyncError(
            f"too short for an offset search: {frames / VIDEO_FPS:.2f} s of video and audio, and a "
            f"1-s window with ±{config.step:g} s around it needs {needed:g} s"
        )
    note = None
    if shift < config.max_shift:
        note = (
            f"range shrunk from ±{config.max_shift / FEATURE_RATE:g} s to ±{shift / FEATURE_RATE:g} s: "
            f"the file is {frames / VIDEO_FPS:.2f} s long"
        )
    starts = window_starts(features, shift, max(1, round(config.hop * VIDEO_FPS)))
    shifts = np.arange(-shift, shift + 1, config.shift_step)
    clip_features = np.array(starts) * FEATURES_PER_FRAME
    positions = np.unique(clip_features[:, None] + shifts[None, :])
    fbank = torch.from_numpy(sample.fbank[:features].astype(np.float32)).to(device)
    audio_emb = embed_audio_windows(model, fbank, positions.tolist(), settings, config.batch_size * 4)
    curves = []
    for first in range(0, len(starts), config.batch_size):
        chunk = starts[first : first + config.batch_size]
        video_emb = embed_clips(model, sample, chunk, settings, device)
        chunk_features = clip_features[first : first + len(chunk)]
        curves.append(distance_curves(video_emb, audio_emb, positions, chunk_features, shifts).cpu().numpy())
    estimate = find_offset(np.concatenate(curves), shifts, config.aggregate)
    best = int(shifts[estimate.best])
    return SyncResult(
        path=path,
        offset_s=best / FEATURE_RATE,
        offset_frames=best / FEATURES_PER_FRAME,
        confidence=estimate.confidence,
        min_distance=float(estimate.curve[estimate.best]),
        median_distance=float(np.median(estimate.curve)),
        window_agreement=estimate.agreement,
        windows=len(starts),
        range_s=shift / FEATURE_RATE,
        duration_s=frames / VIDEO_FPS,
        offsets_s=[round(s / FEATURE_RATE, 4) for s in shifts.tolist()],
        distances=[round(float(d), 6) for d in estimate.curve],
        note=note,
    )


def plot_curve(result: SyncResult, path: Path) -> Path:
    """Write the PNG of distance against offset, with the minimum marked."""
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(result.offsets_s, result.distances, lw=1.2)
    axis.axvline(
        result.offset_s,
        color="red",
        lw=0.8,
        ls="--",
        label=f"offset {result.offset_s:+.2f} s ({result.offset_frames:+.2f} frames)",
    )
    axis.axvline(0.0, color="grey", lw=0.5)
    axis.set(
        xlabel="audio offset, s (positive: the audio lags the video)",
        ylabel=f"embedding distance, combined over {result.windows} windows",
        title=f"{Path(result.path).name}: confidence {result.confidence:.3f}",
    )
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


def sync_file(
    model: AVTSModel, path: Path, settings: InputSettings, config: SyncConfig, device: torch.device
) -> SyncResult:
    """Prepare ``path`` and search its offset; :class:`SyncError` when it cannot be."""
    return sync_sample(model, prepare(path, config), settings, config, device, printable(str(path)))
