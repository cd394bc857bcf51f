"""`avts-features`: what a trained AVTS model sees in any media file, as one feature row per clip (§3.4).

**Audio** (``modality="audio"``, §3.4): conv5 activations of the audio subnet on ``subclips`` equally spaced
2-s sub-clips of each file (10 as for ESC-50, 60 as for DCASE2014), through the code of `avts-probe`: any file
PyAV reads → 16 kHz mono → log filterbank windows (:mod:`trainer.downstream.audio_input`), Z-normalized with the
``stats.json`` stored in the checkpoint and max-pooled to ``pool`` (:mod:`trainer.downstream.subclip_features`:
256 channels × 4 bands × 1 time bin by default). A file shorter than one window (2.01 s) is zero-padded at the
end and its rows say ``padded``.

**Video** (``modality="video"``): pooled conv5 features of the MCx video subnet (``forward_features``: the
input of its embedding layer) on ``clips`` evenly spaced 1-s clips of each file. The file goes through the
ingest's own preprocessing (:func:`pipeline.transcode.transcode`: 25 fps, autorotate, short side scaled to
``short_side``, H.264), except that a file needs 1 s of video (the ingest's 2.5 s is for hard negatives) and
nothing of its audio (none, silent or short are all fine; an audio track the ingest cannot decode or place still
fails the file, with its reason); clips are placed as the validation places them
(:func:`trainer.data.clip_starts`), cropped to the centred square and centre-cropped to the checkpoint's crop
size (:func:`trainer.step.make_video` with ``train=False``).

**Output**: a parquet file with one row per sub-clip or clip: ``path`` (relative to the source folder, or the
name in the CSV), ``label`` and ``fold`` (null when unknown), ``clip`` (its index), ``start_s`` (seconds
from the first decoded audio sample, or from the first stored video frame), ``padded`` and ``feature``
(list<float32>); the run's settings (modality, checkpoint, pool, ...) are the JSON of the schema metadata key
``avts_features`` (:func:`read_features` returns them). Files that gave nothing are listed with the reason in
``<out stem>.skipped.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from rich.console import Console

from avts.atomic import atomic_path, atomic_write_text
from avts.config_cli import option, output_file_checks, validate
from avts.progress import CountProgress
from avts.schema import AUDIO_SAMPLE_RATE, FBANK_FILTERS, VIDEO_FPS, Sample
from pipeline.config import MAX_SHORT_SIDE, EncodeSettings, IngestConfig
from pipeline.discover import VideoItem, display_path, find_files, label_of
from pipeline.transcode import MediaError, transcode
from trainer.checkpoint import TrainedModel
from trainer.clip_decode import decode_clip
from trainer.data import Example, clip_starts, collate, square_crop
from trainer.distributed import device_check
from trainer.downstream.audio_input import decode_table, subclip_filterbanks, subclip_starts
from trainer.downstream.avts_eval import input_settings
from trainer.downstream.labeled_audio import LabeledFile, Skipped, read_csv_layout
from trainer.downstream.subclip_features import DEFAULT_POOL_TEXT, AudioConv5Extractor, parse_pool
from trainer.step import InputSettings, make_video

MODALITIES = ("audio", "video")
VIDEO_MIN_FRAMES = VIDEO_FPS  # one 1-s clip; the ingest's 2.5 s default is for AVTS's hard negatives
METADATA_KEY = b"avts_features"
ROWS_PER_GROUP_BATCHES = 4  # files are processed in groups of about this many forward batches of rows


@dataclass(frozen=True)
class FeaturesConfig:
    """What `avts-features` needs; its flags are made from these fields."""

    checkpoint: Path = option(help="avts-train checkpoint (its audio stats and crop size come with it)")
    src: Path = option(
        help="a folder (every media file under it, recursively; the first folder level is the "
        "label) or an ESC-50-style CSV (filename, fold or split, category)"
    )
    out: Path = option(help="features parquet (one row per sub-clip or clip)")
    modality: str = option(
        "audio",
        help="audio: conv5 of the audio subnet on 2-s sub-clips (§3.4); video: pooled "
        "conv5 of the video subnet on 1-s clips",
        choices=MODALITIES,
    )
    subclips: int = option(
        10, help="audio: equally spaced 2-s sub-clips per file (10 as for ESC-50, 60 as for DCASE2014)"
    )
    pool: str = option(
        DEFAULT_POOL_TEXT,
        metavar="BANDSxTIME",
        help="audio: adaptive max pool of conv5, 256·BANDS·TIME dims per sub-clip at width 64",
    )
    clips: int = option(10, help="video: evenly spaced 1-s clips per file")
    short_side: int = option(
        128,
        help="video: short side the video is scaled to; use the --short-side of the "
        "ingest that made the training shards",
    )
    audio_dir: Path | None = option(
        None,
        help="CSV --src: folder holding the CSV's filenames (default: the "
        "audio_file column, else audio/ beside the CSV's folder)",
    )
    batch_size: int = option(32, help="sub-clips or clips per forward pass")
    device: str = option("auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    plain: bool | None = option(
        None, help="plain progress lines instead of a bar (automatic without a terminal or with CI set)"
    )

    def __post_init__(self) -> None:
        validate(
            [
                device_check(self.device),
                *output_file_checks(self.out, ".parquet"),
                (
                    self.modality in MODALITIES,
                    f"--modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}",
                ),
                (self.subclips >= 1, "--subclips must be ≥ 1"),
                (self.clips >= 1, "--clips must be ≥ 1"),
                (self.batch_size >= 1, "--batch-size must be ≥ 1"),
                (
                    16 <= self.short_side <= MAX_SHORT_SIDE and self.short_side % 2 == 0,
                    f"--short-side must be an even number in [16, {MAX_SHORT_SIDE}]",
                ),
            ]
        )
        parse_pool(self.pool)

    @property
    def pool_size(self) -> tuple[int, int]:
        """``pool`` as ``(bands, time_bins)``."""
        return parse_pool(self.pool)

    @property
    def skipped_path(self) -> Path:
        """``<out stem>.skipped.json`` beside the parquet."""
        return self.out.with_name(f"{self.out.stem}.skipped.json")


class FeaturesError(Exception):
    """The features cannot be made at all (a bad source); the message says why."""


@dataclass(frozen=True)
class Sources:
    """The files to read, what was passed over, and the folders their output names are relative to."""

    files: list[LabeledFile]  # label and fold are "" when unknown
    skipped: list[Skipped]
    bases: tuple[Path, ...]  # a file is named relative to the first of these that holds it

    def name_of(self, path: str | Path) -> str:
        """The output name of a file: relative to the source folder, or as in the CSV."""
        for base in self.bases:
            try:
                return display_path(Path(path), base)
            except ValueError:
                continue
        return str(path)


def read_sources(src: Path, audio_dir: Path | None = None, exclude: Sequence[Path] = ()) -> Sources:
    """The files of ``src``: every file under a folder (hidden ones passed over and listed; ``exclude`` left out
    silently), or the rows of an ESC-50-style CSV (:func:`~trainer.downstream.labeled_audio.read_csv_layout`)."""
    if src.is_dir():
        if audio_dir is not None:
            raise FeaturesError("--audio-dir only applies to a CSV --src")
        found = find_files(src)
        left_out = {os.path.realpath(path) for path in exclude}  # realpath, unlike resolve, takes symlink loops
        files = [
            LabeledFile(path, label_of(display_path(path, src)) or "", "")
            for path in found.files
            if os.path.realpath(path) not in left_out
        ]
        return Sources(files, [Skipped(str(src / item.relpath), item.reason) for item in found.skipped], (src,))
    if src.is_file() and src.suffix.lower() == ".csv":
        labeled = read_csv_layout(src, audio_dir)
        bases = (*(() if audio_dir is None else (audio_dir,)), src.parent, src.parent.parent / "audio")
        return Sources(labeled.files, labeled.skipped, bases)
    if src.exists():
        raise FeaturesError(f"--src {src} is neither a folder nor a .csv file")
    raise FileNotFoundError(f"--src {src}: no such folder or CSV file")


@dataclass
class FileRows:
    """The feature rows of one file."""

    file: LabeledFile
    starts_s: np.ndarray  # (rows,) start of each sub-clip or clip, seconds
    features: np.ndarray  # (rows, dim) float32
    padded: bool = False


@dataclass
class GroupResult:
    """What a group of files gave: rows of the files that worked, reasons for the others."""

    rows: list[FileRows] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Extractor(Protocol):
    """Turns a group of files into feature rows (one modality)."""

    feature_dim: int
    rows_per_file: int

    def __call__(self, files: list[LabeledFile], progress: CountProgress) -> GroupResult:
        """Rows of ``files``; each file advances ``progress`` once (as failed when it is skipped)."""
        ...

    def settings(self) -> dict[str, Any]:
        """What decides the features, for the parquet metadata."""
        ...


class AudioFeatures:
    """§3.4 audio features: pooled conv5 of the audio subnet on equally spaced 2-s sub-clips (see the module)."""

    def __init__(
        self, trained: TrainedModel, subclips: int, pool: tuple[int, int], device: torch.device, batch_size: int
    ) -> None:
        self.subclips = subclips
        self.pool = pool
        self.extract = AudioConv5Extractor(
            trained.model.audio, trained.stats.mean, trained.stats.std, pool, device, batch_size
        )
        self.feature_dim = self.extract.feature_dim
        self.rows_per_file = subclips

    def __call__(self, files: list[LabeledFile], progress: CountProgress) -> GroupResult:
        """Decode the group to sub-clip filterbanks (the probe's :func:`decode_table`), then conv5 features."""
        starts: list[np.ndarray] = []

        def per_file(signal: np.ndarray) -> tuple[np.ndarray, bool]:
            starts.append(subclip_starts(len(signal), self.subclips) / AUDIO_SAMPLE_RATE)
            return subclip_filterbanks(signal, self.subclips)

        table = decode_table(files, per_file, progress)
        if not table.files:
            return GroupResult([], table.skipped)
        features = self.extract(table.features).reshape(len(table.files), self.subclips, -1)
        padded = set(table.padded)
        rows = [
            FileRows(item, starts[index], features[index], str(item.path) in padded)
            for index, item in enumerate(table.files)
        ]
        return GroupResult(rows, table.skipped)

    def settings(self) -> dict[str, Any]:
        """Sub-clips, pool and normalization."""
        return {
            "subclips": self.subclips,
            "subclip_s": 2.0,
            "pool": list(self.pool),
            "pool_kind": "adaptive max over (frequency bands, time bins) of conv5 after pool5",
            "normalization": "stats stored in the checkpoint",
        }


class VideoFeatures:
    """Pooled conv5 features of the video subnet on evenly spaced 1-s clips (see the module docstring)."""

    def __init__(
        self, trained: TrainedModel, clips: int, short_side: int, device: torch.device, batch_size: int
    ) -> None:
        self.net = trained.model.video
        self.input: InputSettings = input_settings(trained, device)
        self.encode = video_encode_settings(short_side)
        self.clips, self.device, self.batch_size = clips, device, batch_size
        self.feature_dim = self.net.feature_dim
        self.time_bins = trained.spec.video_time_bins
        self.rows_per_file = clips

    def __call__(self, files: list[LabeledFile], progress: CountProgress) -> GroupResult:
        """Prepare each file as the ingest does and cut its clips, then run the subnet on all of them."""
        result = GroupResult()
        kept: list[tuple[LabeledFile, list[int]]] = []
        examples: list[Example] = []
        for item in files:
            try:
                sample = prepare_video(item.path, self.encode)
                if sample.meta.frames < VIDEO_MIN_FRAMES:
                    raise MediaError(
                        "too short", f"{sample.meta.frames / VIDEO_FPS:.2f} s < {VIDEO_MIN_FRAMES / VIDEO_FPS:g} s"
                    )
                starts = clip_starts(sample.meta.frames, VIDEO_FPS, self.clips, rng=None)
                examples.extend(clip_example(sample, start) for start in starts)
            except (MediaError, ValueError) as error:
                result.skipped.append(Skipped(str(item.path), str(error)))
                progress.advance(1, failed=1)
                continue
            kept.append((item, starts))
            progress.advance(1)
        if not kept:
            return result
        features = self.forward(examples).reshape(len(kept), self.clips, -1)
        result.rows = [
            FileRows(item, np.asarray(starts) / VIDEO_FPS, features[index]) for index, (item, starts) in enumerate(kept)
        ]
        return result

    @torch.no_grad()
    def forward(self, examples: list[Example]) -> np.ndarray:
        """``(len(examples), feature_dim)`` float32 features, ``batch_size`` clips per forward pass."""
        out = np.empty((len(examples), self.feature_dim), dtype=np.float32)
        for first in range(0, len(examples), self.batch_size):
            batch = collate(examples[first : first + self.batch_size]).to(self.device)
            video = make_video(batch, self.input, train=False, generator=None)
            out[first : first + len(batch.keys)] = self.net.forward_features(video).float().cpu().numpy()
        return out

    def settings(self) -> dict[str, Any]:
        """Clips, sizes and pooling."""
        return {
            "clips": self.clips,
            "clip_s": 1.0,
            "short_side": self.encode.short_side,
            "crop_size": self.input.crop_size,
            "min_duration_s": VIDEO_MIN_FRAMES / VIDEO_FPS,
            "pool": [self.time_bins, 1, 1],
            "pool_kind": "adaptive average over (time bins, height, width) of conv5 (the subnet's own pool)",
        }


def video_encode_settings(short_side: int) -> EncodeSettings:
    """The ingest's encoding at ``short_side``, files without (audible) audio kept.

    The ingest's minimum duration is one frame here: it also applies to the audio track, which the video features
    do not use (a 1.1-s video with 0.99 s of sound must not be refused); :class:`VideoFeatures` asks for 1 s of
    video itself.
    """
    return IngestConfig(
        src=Path("."), short_side=short_side, min_duration=1 / VIDEO_FPS, keep_without_audio=True
    ).encode_settings()


def prepare_video(path: Path, settings: EncodeSettings) -> Sample:
    """The file as `avts-ingest` would store it (:class:`MediaError` with the ingest's reason when it cannot be)."""
    item = VideoItem(key=path.stem, path=path, relpath=path.name, label=None, split="test", stats_rank=None)
    return transcode(item, settings).sample


def clip_example(sample: Sample, start: int) -> Example:
    """The 1-s clip starting at video frame ``start``, cropped to the centred square (no audio)."""
    y, u, v = square_crop(decode_clip(sample.video, start, VIDEO_FPS), None)
    return Example(sample.key, y, u, v, np.zeros((1, FBANK_FILTERS), dtype=np.float16), 0, 0)


def build_extractor(config: FeaturesConfig, trained: TrainedModel, device: torch.device) -> Extractor:
    """The extractor of ``config.modality``."""
    if config.modality == "audio":
        return AudioFeatures(trained, config.subclips, config.pool_size, device, config.batch_size)
    return VideoFeatures(trained, config.clips, config.short_side, device, config.batch_size)


def groups(files: list[LabeledFile], size: int) -> Iterator[list[LabeledFile]]:
    """Consecutive groups of ``size`` files."""
    for first in range(0, len(files), size):
        yield files[first : first + size]


SCHEMA_FIELDS = [
    pa.field("path", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("fold", pa.string()),
    pa.field("clip", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("padded", pa.bool_(), nullable=False),
    pa.field("feature", pa.list_(pa.float32()), nullable=False),
]


def rows_table(rows: list[FileRows], name_of: Callable[[Path], str], schema: pa.Schema) -> pa.Table:
    """One arrow row per sub-clip or clip of ``rows``."""
    counts = [len(item.features) for item in rows]
    features = np.concatenate([item.features for item in rows]).astype(np.float32)
    dim = features.shape[1]
    offsets = np.arange(0, features.size + 1, dim, dtype=np.int32)
    columns = {
        "path": [name_of(item.file.path) for item, count in zip(rows, counts, strict=True) for _ in range(count)],
        "label": [item.file.label or None for item, count in zip(rows, counts, strict=True) for _ in range(count)],
        "fold": [item.file.fold or None for item, count in zip(rows, counts, strict=True) for _ in range(count)],
        "clip": np.concatenate([np.arange(count, dtype=np.int32) for count in counts]),
        "start_s": np.concatenate([item.starts_s.astype(np.float64) for item in rows]),
        "padded": np.repeat([item.padded for item in rows], counts),
    }
    arrays = [pa.array(values, type=schema.field(name).type) for name, values in columns.items()]
    arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(features.reshape(-1))))
    return pa.Table.from_arrays(arrays, schema=schema)


class ParquetRows:
    """Appends row groups to a parquet file written atomically; nothing at all is written if no row comes."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self.rows = 0
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetRows:
        return self

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (opening the temporary file on the first rows)."""
        if self._writer is None:
            tmp = self._stack.enter_context(atomic_path(self.path))
            self._writer = self._stack.enter_context(pq.ParquetWriter(tmp, self.schema))
        self._writer.write_table(table)
        self.rows += table.num_rows

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stack.__exit__(kind, error, trace)  # closes the writer, then renames (or removes) the file


@dataclass
class FeaturesSummary:
    """What a run made."""

    files: int  # files that gave rows
    rows: int
    feature_dim: int
    skipped: list[dict[str, str]]  # {"path", "reason"}
    padded: list[str]  # names of audio files zero-padded to one 2-s window
    written: bool  # whether the parquet was written (not when no file gave rows)


def extract_features(
    config: FeaturesConfig, trained: TrainedModel, device: torch.device, console: Console | None = None
) -> FeaturesSummary:
    """Write ``config.out`` (the parquet) and ``config.skipped_path`` for the files of ``config.src``.

    Raises :class:`FeaturesError` (or ``FileNotFoundError``, a CSV's ``LayoutError``) when the source cannot be
    read; a file that gives nothing is only listed in the skipped file with its reason.
    """
    sources = read_sources(config.src, config.audio_dir, exclude=(config.out, config.skipped_path))
    extractor = build_extractor(config, trained, device)
    info = {
        "modality": config.modality,
        "checkpoint": str(config.checkpoint),
        "source": str(config.src),
        "feature_dim": extractor.feature_dim,
        "model_spec": trained.spec.to_dict(),
        **extractor.settings(),
    }
    schema = pa.schema(SCHEMA_FIELDS, metadata={METADATA_KEY: json.dumps(info).encode("utf-8")})
    group_size = max(1, -(-ROWS_PER_GROUP_BATCHES * config.batch_size // extractor.rows_per_file))
    skipped: list[Skipped] = list(sources.skipped)
    padded: list[str] = []
    files = 0
    with (
        CountProgress(f"{config.modality} features", len(sources.files), "files", console, config.plain) as bar,
        ParquetRows(config.out, schema) as writer,
    ):
        for group in groups(sources.files, group_size):
            result = extractor(group, bar)
            skipped.extend(result.skipped)
            if result.rows:
                writer.write(rows_table(result.rows, sources.name_of, schema))
                files += len(result.rows)
                padded.extend(sources.name_of(item.file.path) for item in result.rows if item.padded)
    listed = [{"path": sources.name_of(item.path), "reason": item.reason} for item in skipped]
    atomic_write_text(
        config.skipped_path,
        json.dumps(
            {"source": str(config.src), "files": len(sources.files), "skipped": listed, "padded": padded}, indent=2
        )
        + "\n",
    )
    return FeaturesSummary(files, writer.rows, extractor.feature_dim, listed, padded, writer.rows > 0)


def read_features(path: Path) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """An `avts-features` parquet as ``(rows without the feature column, features (rows, dim) float32, settings)``."""
    table = pq.read_table(path)
    info = json.loads((table.schema.metadata or {})[METADATA_KEY])
    features = pc.list_flatten(table.column("feature")).to_numpy().reshape(len(table), info["feature_dim"])
    return table.drop_columns(["feature"]).to_pandas(), features, info
