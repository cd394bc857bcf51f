"""Streaming input: WebDataset shards → decoded 1-s clips + audio feature windows → batches.

Small composable stages, as in webdataset itself: shard list (shuffled per epoch, or resampled) → split by
DDP rank and DataLoader worker → tar samples → seeded shuffle buffer → skip what a resumed run already
consumed → decode one clip per sample (YUV, cropped square) and cut an audio context around it → batch.

The out-of-sync pairs are *not* made here: the loader ships each clip with the audio features around it
and :mod:`trainer.sampler` builds positives and negatives on the GPU.

Shards may be local files, ``pipe:`` commands, or object-store/HTTP URLs (``s3://…``, ``http://…``): importing
this module routes those schemes in webdataset's ``gopen`` through :mod:`avts.storage` (fsspec), in the main
process and, as the DataLoader workers import or inherit this module, in every worker. A shard that breaks
off mid-way (a dropped connection) is a warning naming it, and the epoch goes on with the next shard.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from avts import storage
from avts.schema import FBANK_FILTERS, FEATURE_RATE, FEATURES_PER_FRAME, VIDEO_FPS, decode_sample
from avts.seeds import numpy_rng, stable_int
from trainer.clip_decode import decode_clip, split_planes

storage.register_gopen_handlers()  # s3://, gs://, http(s)://… shards through fsspec (see the module docstring)

WINDOW = FEATURE_RATE  # feature frames in a 1-s audio window
POSITION = "__position__"  # sample field: rank/worker/index in the worker's stream


@dataclass
class Example:
    """One clip and the audio around it, as produced in a loader worker."""

    key: str
    y: np.ndarray  # (T, S, S) uint8
    u: np.ndarray  # (T, S/2, S/2) uint8
    v: np.ndarray  # (T, S/2, S/2) uint8
    feats: np.ndarray  # (context, 40) float16, zero-padded after `valid`
    valid: int
    clip_start: int  # feature frame of the clip start within `feats`
    label: str | None = None  # the sample's class (first folder level at ingest), for fine-tuning


@dataclass
class Batch:
    """A batch of examples as tensors (still on the CPU, pinned when training on a GPU)."""

    y: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    feats: torch.Tensor
    valid: torch.Tensor
    clip_start: torch.Tensor
    video_id: torch.Tensor  # (B,) int64 hash of the key: rows of one video share it
    keys: list[str]
    worker: int
    labels: list[str | None] = field(default_factory=list)  # per row, as in the sample metadata

    def pin_memory(self) -> Batch:
        """Pin the tensors so host→device copies can be asynchronous (called by the DataLoader)."""
        return replace(self, **{name: getattr(self, name).pin_memory() for name in TENSOR_FIELDS})

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device`` (asynchronous copies from pinned memory)."""
        return replace(self, **{name: getattr(self, name).to(device, non_blocking=True) for name in TENSOR_FIELDS})


TENSOR_FIELDS = ("y", "u", "v", "feats", "valid", "clip_start", "video_id")


@dataclass(frozen=True)
class LoaderSpec:
    """What a loader needs to know; built by the trainer from its config."""

    shards: list[str]
    batch_size: int
    clip_frames: int
    context_frames: int  # audio feature frames shipped per example
    seed: int
    workers: int
    shuffle_buffer: int = 500
    training: bool = True
    resampled: bool = False
    clips_per_video: int = 1  # validation: evenly spaced clips per video
    pin_memory: bool = False
    needs_audio: bool = True  # skip samples ingested without audible audio (--keep-without-audio)


def sample_rng(seed: int, epoch: int, key: str, position: str) -> np.random.Generator:
    """A generator for one draw of one sample: fixed by (seed, epoch, key, stream position).

    The position (rank, worker, index in that worker's stream) makes every occurrence of a video get fresh
    clips, also when resampled shards bring it several times in an epoch (else the net could memorize the
    repeated clip/audio pairs instead of learning synchronization); being a pure function of the stream,
    it gives a resumed run the very same draws.
    """
    return numpy_rng("sample", seed, epoch, key, position)


def video_id(key: str) -> int:
    """A 63-bit integer identifying a video (its key), so the GPU sampler can tell videos apart."""
    return stable_int("video", key)


def clip_starts(frames: int, clip_frames: int, count: int, rng: np.random.Generator | None) -> list[int]:
    """Clip start frames: one uniform random start, or ``count`` evenly spaced ones when ``rng`` is None."""
    last = max(frames - clip_frames, 0)
    if rng is not None:
        return [int(rng.integers(0, last + 1))]
    return [round((j + 0.5) / count * last) for j in range(count)]


def audio_context(
    fbank: np.ndarray, clip_feature_start: int, context: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, int, int]:
    """Cut ``context`` feature frames that contain the clip's window; returns (feats, valid, clip offset).

    The cut is placed at random (training) or centred on the clip (``rng`` None); short videos are
    zero-padded and ``valid`` says how many rows are real.
    """
    total = len(fbank)
    lowest = max(0, clip_feature_start + WINDOW - context)
    highest = max(lowest, min(clip_feature_start, total - context))
    if rng is not None:
        begin = int(rng.integers(lowest, highest + 1))
    else:
        begin = int(np.clip(clip_feature_start + WINDOW // 2 - context // 2, lowest, highest))
    window = fbank[begin : begin + context]
    out = np.zeros((context, FBANK_FILTERS), dtype=np.float16)
    out[: len(window)] = window
    return out, len(window), clip_feature_start - begin


def square_crop(clip: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the YUV clip to a square of its short side (random offset when training, else centred)."""
    y, u, v = split_planes(clip)
    height, width = y.shape[1:]
    side = min(height, width) // 2 * 2
    slack_y, slack_x = (height - side) // 2, (width - side) // 2  # in chroma pixels
    off_y = int(rng.integers(0, slack_y + 1)) if rng is not None else slack_y // 2
    off_x = int(rng.integers(0, slack_x + 1)) if rng is not None else slack_x // 2
    half = side // 2
    return (
        np.ascontiguousarray(y[:, 2 * off_y : 2 * off_y + side, 2 * off_x : 2 * off_x + side]),
        np.ascontiguousarray(u[:, off_y : off_y + half, off_x : off_x + half]),
        np.ascontiguousarray(v[:, off_y : off_y + half, off_x : off_x + half]),
    )


def to_examples(raw: dict, spec: LoaderSpec, epoch: int) -> Iterator[Example]:
    """Decode one shard sample into its example(s): one random clip (training) or evenly spaced clips."""
    sample = decode_sample(raw)
    if spec.needs_audio and not sample.meta.audible:
        return  # silent features would teach synchronization nothing (see SampleMeta.audible)
    if not np.isfinite(sample.fbank).all():
        raise ValueError("its audio features hold NaN or infinite values")
    if len(sample.fbank) != sample.meta.frames * FEATURES_PER_FRAME:  # the ingest writes exactly this many
        raise ValueError(
            f"its audio features cover {len(sample.fbank) / FEATURE_RATE:.2f} s but its video "
            f"{sample.meta.frames / VIDEO_FPS:.2f} s"
        )
    frames = sample.meta.frames
    rng = sample_rng(spec.seed, epoch, sample.key, raw[POSITION]) if spec.training else None
    for start in clip_starts(frames, spec.clip_frames, spec.clips_per_video, rng):
        clip = decode_clip(sample.video, start, spec.clip_frames)
        y, u, v = square_crop(clip, rng)
        feats, valid, offset = audio_context(sample.fbank, start * FEATURES_PER_FRAME, spec.context_frames, rng)
        yield Example(sample.key, y, u, v, feats, valid, offset, sample.meta.label)


def collate(examples: list[Example]) -> Batch:
    """Stack examples into a :class:`Batch`, tagged with the worker that made it (for exact resume)."""
    info = get_worker_info()
    return Batch(
        y=torch.from_numpy(np.stack([e.y for e in examples])),
        u=torch.from_numpy(np.stack([e.u for e in examples])),
        v=torch.from_numpy(np.stack([e.v for e in examples])),
        feats=torch.from_numpy(np.stack([e.feats for e in examples])),
        valid=torch.tensor([e.valid for e in examples], dtype=torch.int64),
        clip_start=torch.tensor([e.clip_start for e in examples], dtype=torch.int64),
        video_id=torch.tensor([video_id(e.key) for e in examples], dtype=torch.int64),
        keys=[e.key for e in examples],
        worker=info.id if info is not None else 0,
        labels=[e.label for e in examples],
    )


def number_and_skip(skips: dict[int, int], batch_size: int) -> Callable[[Iterable[dict]], Iterator[dict]]:
    """A stage that tags each sample with its stream position and drops those a resumed run already used.

    ``skips[worker]`` batches of this worker were consumed before the interruption, so its first
    ``skips[worker] * batch_size`` samples are dropped here, before any decoding.
    """

    def stage(source: Iterable[dict]) -> Iterator[dict]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rank = wds.utils.pytorch_worker_info()[0]
        for index, sample in enumerate(source):
            if index >= skips.get(worker, 0) * batch_size:
                sample[POSITION] = f"{rank}/{worker}/{index}"
                yield sample

    return stage


MAX_UNUSABLE_IN_A_ROW = 2000  # samples: a stream that yields nothing for this long ends (resampled shards never do)


def expand_examples(spec: LoaderSpec, epoch: int) -> Callable[[Iterable[dict]], Iterator[Example]]:
    """A stage that turns raw samples into examples; a sample that cannot be used is skipped with a warning
    that names it and its shard. After :data:`MAX_UNUSABLE_IN_A_ROW` samples in a row that gave no example (bad,
    or ingested without audible audio) the stream ends with a warning: resampled shards would otherwise be read
    round and round for ever when none of their samples can be used."""

    def stage(source: Iterable[dict]) -> Iterator[Example]:
        unusable = 0
        for raw in source:
            used = False
            try:
                for example in to_examples(raw, spec, epoch):
                    used = True
                    yield example
            except Exception as error:
                warnings.warn(
                    f"skipped sample {raw.get('__key__')!r} of shard {raw.get('__url__')!r}: "
                    f"{type(error).__name__}: {error}",
                    BadSampleWarning,
                    stacklevel=1,
                )
            unusable = 0 if used else unusable + 1
            if unusable >= MAX_UNUSABLE_IN_A_ROW:
                warnings.warn(
                    f"no usable sample in the last {unusable} read (bad, or ingested without audible audio): "
                    "this data loader stream ends here",
                    BadSampleWarning,
                    stacklevel=1,
                )
                return

    return stage


class BadSampleWarning(UserWarning):
    """A shard sample that could not be decoded or holds unusable values; training goes on without it."""


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed shared by every rank for an epoch's shard order and shuffle buffer."""
    return stable_int("epoch", seed, epoch)


def build_pipeline(spec: LoaderSpec, epoch: int, skips: dict[int, int] | None = None) -> wds.DataPipeline:
    """The webdataset pipeline of one epoch (see the module docstring for the stages)."""
    if spec.resampled:
        stages: list = [wds.ResampledShards(spec.shards, seed=epoch_seed(spec.seed, epoch), deterministic=True)]
    else:
        shuffle = epoch_seed(spec.seed, epoch) if spec.training else None
        stages = [wds.SimpleShardList(spec.shards, seed=shuffle)]
        if spec.training:
            stages.append(wds.split_by_node)
        stages.append(wds.split_by_worker)
    stages.append(wds.tarfile_to_samples(handler=wds.warn_and_continue))
    if spec.training:
        stages.append(
            wds.detshuffle(spec.shuffle_buffer, min(100, spec.shuffle_buffer), seed=epoch_seed(spec.seed, epoch))
        )
    stages += [number_and_skip(skips or {}, spec.batch_size), expand_examples(spec, epoch)]
    if not spec.training:  # spread the clips of one video over batches: easy negatives need other videos
        stages.append(wds.detshuffle(spec.shuffle_buffer, spec.shuffle_buffer, seed=spec.seed))
    stages.append(wds.batched(spec.batch_size, collation_fn=collate, partial=not spec.training))
    return wds.DataPipeline(*stages)


def build_loader(spec: LoaderSpec, epoch: int, skips: dict[int, int] | None = None) -> DataLoader:
    """A DataLoader over :func:`build_pipeline`; batches are made inside the workers."""
    return DataLoader(
        build_pipeline(spec, epoch, skips),
        batch_size=None,
        num_workers=spec.workers,
        pin_memory=spec.pin_memory,
        prefetch_factor=4 if spec.workers else None,
        persistent_workers=False,
    )
