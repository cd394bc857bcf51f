"""Training throughput: our shard loader vs synthetic GPU tensors vs a map-style raw-mp4 PyAV loader.

Every mode runs the same GPU work per step (YUV → RGB, multi-scale crop + flip, GPU pair sampling, audio
Z-normalization, forward + backward + SGD step of the two-stream net, bf16 autocast on CUDA), so the
clips/s differ only by how the batches arrive:

* ``synthetic``: random uint8 planes and features generated once on the device (the ceiling);
* ``shards``: :func:`trainer.data.build_loader` streaming `avts-ingest` shards (resampled);
* ``mapstyle``: a ``torch.utils.data.Dataset`` that opens a raw video file per sample with PyAV, decodes a
  random 1-s window (resized to the same short side, as YUV) and the audio around it, and computes the
  filterbank features — the usual map-style loader.

It also reports loader-only throughput (clips/s per worker core, no GPU work), peak GPU memory and the
per-stage times of one step. Results are appended to ``benchmarks/RESULTS.md`` (section ``## Training``).

    python benchmarks/train_bench.py --shards shards/ --raw kinetics/ --workers 15
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from bench_results import machine_line, write_section  # noqa: E402

from avts.schema import FEATURES_PER_FRAME, VIDEO_FPS  # noqa: E402
from pipeline.audio import AudioCollector, log_filterbank  # noqa: E402
from trainer.augment import AudioNormalizer  # noqa: E402
from trainer.data import Batch, Example, LoaderSpec, audio_context, build_loader, collate, square_crop  # noqa: E402
from trainer.models import AVTSModel, ModelSpec, build_avts  # noqa: E402
from trainer.optim import build_optimizer  # noqa: E402
from trainer.sampler import NegativeMix, PairSampler  # noqa: E402
from trainer.step import InputSettings, training_step  # noqa: E402

MIX = NegativeMix(easy=0.75, hard=0.25)


@dataclass
class Setup:
    """The model and GPU pipeline shared by all modes."""

    model: AVTSModel
    optimizer: torch.optim.Optimizer
    settings: InputSettings
    generator: torch.Generator
    device: torch.device


class RawClipDataset(Dataset):
    """Map-style baseline: each item decodes a random 1-s window of a raw video file with PyAV."""

    def __init__(self, files: list[Path], short_side: int, context_frames: int) -> None:
        self.files, self.short_side, self.context_frames = files, short_side, context_frames

    def __len__(self) -> int:
        return 1_000_000  # items cycle through the files, each with its own random window

    def __getitem__(self, index: int) -> Example:
        path = self.files[index % len(self.files)]
        rng = np.random.default_rng(index)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            duration = float(stream.duration * stream.time_base) if stream.duration else 10.0
            start_s = float(rng.uniform(0, max(duration - 1.0, 0)))
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
            frames = []
            for frame in container.decode(stream):
                if frame.time < start_s:
                    continue
                width, height = frame.width, frame.height
                scale = self.short_side / min(width, height)
                resized = frame.reformat(
                    width=round(width * scale / 2) * 2, height=round(height * scale / 2) * 2, format="yuv420p"
                )
                frames.append(resized.to_ndarray())
                if len(frames) == VIDEO_FPS:
                    break
        while len(frames) < VIDEO_FPS:
            frames.append(frames[-1])
        y, u, v = square_crop(np.stack(frames), rng)
        fbank = self._features(path)
        feats, valid, offset = audio_context(
            fbank, round(start_s * VIDEO_FPS) * FEATURES_PER_FRAME, self.context_frames, rng
        )
        return Example(path.name, y, u, v, feats, valid, offset)

    @staticmethod
    def _features(path: Path) -> np.ndarray:
        collector = AudioCollector()
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                collector.push(frame)
        return log_filterbank(collector.finish()).astype(np.float16)


def one_math_thread(_: int) -> None:
    """Limit numpy's BLAS to one thread in a baseline worker (else each starts one per core: unfair to it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def make_setup(args: argparse.Namespace, device: torch.device) -> Setup:
    """Model, optimizer and GPU pipeline as avts-train builds them."""
    torch.manual_seed(0)
    model = build_avts(ModelSpec(arch=args.arch, width=args.width, audio_width=args.width)).to(device)
    if device.type == "cuda":
        model.video.to(memory_format=torch.channels_last_3d)
    optimizer = build_optimizer(model.parameters(), "sgd", lr=0.01, momentum=0.9, weight_decay=1e-4)
    settings = InputSettings(
        args.crop, (1.0, 0.875, 0.75, 0.66), AudioNormalizer([0.0] * 40, [1.0] * 40, device), PairSampler()
    )
    return Setup(model, optimizer, settings, torch.Generator(device).manual_seed(0), device)


def train_step(setup: Setup, batch: Batch, mark=None) -> torch.Tensor:
    """The avts-train step (:func:`trainer.step.training_step`) with this benchmark's negative mix."""
    return training_step(setup.model, setup.optimizer, batch, setup.settings, MIX, setup.generator, 0.99, mark).loss


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_training(setup: Setup, batches, steps: int, warmup: int) -> float:
    """clips/s over ``steps`` steps after ``warmup`` steps."""
    iterator = iter(batches)
    clips = 0
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(setup.device)
            started = time.perf_counter()
        batch = next(iterator)
        train_step(setup, batch.to(setup.device))
        clips += len(batch.keys) if step >= warmup else 0
    synchronize(setup.device)
    return clips / (time.perf_counter() - started)


def synthetic_batches(args: argparse.Namespace, device: torch.device):
    """The same device batch forever (uint8 planes and float16 features already on the GPU)."""
    b, side, context = args.batch_size, args.short_side, round(args.audio_context * 100)
    batch = Batch(
        y=torch.randint(0, 256, (b, VIDEO_FPS, side, side), dtype=torch.uint8, device=device),
        u=torch.randint(0, 256, (b, VIDEO_FPS, side // 2, side // 2), dtype=torch.uint8, device=device),
        v=torch.randint(0, 256, (b, VIDEO_FPS, side // 2, side // 2), dtype=torch.uint8, device=device),
        feats=torch.randn(b, context, 40, device=device).half(),
        valid=torch.full((b,), context, device=device),
        clip_start=torch.full((b,), context // 2 - 50, device=device),
        video_id=torch.arange(b, device=device),
        keys=["synthetic"] * b,
        worker=0,
    )
    while True:
        yield batch


def loader_only(batches, count: int) -> float:
    """clips/s of a loader without any GPU work (after its first batch)."""
    iterator = iter(batches)
    next(iterator)
    started, clips = time.perf_counter(), 0
    for _ in range(count):
        clips += len(next(iterator).keys)
    return clips / (time.perf_counter() - started)


def stage_times(setup: Setup, batches, steps: int = 10) -> dict[str, float]:
    """Milliseconds per step of each stage, with a device sync between stages."""
    iterator = iter(batches)
    totals = {
        "wait for batch": 0.0,
        "host→device": 0.0,
        "augment": 0.0,
        "pair sampling": 0.0,
        "forward+backward+step": 0.0,
    }
    for step in range(steps + 2):
        marks = [time.perf_counter()]
        batch = next(iterator)
        marks.append(time.perf_counter())
        on_device = batch.to(setup.device)

        def mark(marks: list[float] = marks) -> None:
            synchronize(setup.device)
            marks.append(time.perf_counter())

        mark()
        train_step(setup, on_device, mark)
        if step >= 2:
            for name, begin, end in zip(totals, marks, marks[1:], strict=False):
                totals[name] += (end - begin) * 1000 / steps
    return totals


def main(argv: list[str] | None = None) -> int:
    """Run all modes and print/append the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", required=True, help="folder or pattern of avts-ingest training shards")
    parser.add_argument("--raw", type=Path, required=True, help="folder of the raw videos the shards came from")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arch", default="mc3")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--audio-context", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=max((os.cpu_count() or 2) - 1, 1))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    context = round(args.audio_context * 100)
    from trainer.shardlist import expand_shards

    spec = LoaderSpec(
        expand_shards(args.shards),
        args.batch_size,
        VIDEO_FPS,
        context,
        seed=0,
        workers=args.workers,
        shuffle_buffer=200,
        training=True,
        resampled=True,
        pin_memory=device.type == "cuda",
    )
    raw_files = sorted(p for p in args.raw.iterdir() if p.is_file())

    def mapstyle_loader() -> DataLoader:
        return DataLoader(
            RawClipDataset(raw_files, args.short_side, context),
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
            prefetch_factor=4,
            persistent_workers=False,
            worker_init_fn=one_math_thread,
        )

    setup = make_setup(args, device)
    results: dict[str, float] = {}

    def measure(name: str, action) -> None:
        began = time.perf_counter()
        results[name] = action()
        print(f"[train_bench] {name}: {results[name]:.1f} clips/s ({time.perf_counter() - began:.0f} s)", flush=True)

    measure("synthetic", lambda: timed_training(setup, synthetic_batches(args, device), args.steps, args.warmup))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    measure("shards", lambda: timed_training(setup, build_loader(spec, 0), args.steps, args.warmup))
    memory_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    measure(
        "mapstyle", lambda: timed_training(setup, mapstyle_loader(), max(args.steps // 3, 5), max(args.warmup // 3, 2))
    )
    loader_count = max(args.steps, 20)
    measure("shards loader only", lambda: loader_only(build_loader(spec, 0), loader_count))
    measure("mapstyle loader only", lambda: loader_only(mapstyle_loader(), max(loader_count // 4, 5)))
    stages = stage_times(setup, build_loader(spec, 0))

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    lines = [
        f"Machine: {machine_line()}; device: {gpu}. Model {args.arch} width {args.width}, "
        f"{args.batch_size} clips/step of 25×{args.crop}×{args.crop}, bf16 autocast on CUDA, "
        f"{args.workers} loader workers.",
        "",
        "| mode | clips/s | vs synthetic |",
        "| --- | ---: | ---: |",
    ]
    for mode in ("synthetic", "shards", "mapstyle"):
        lines.append(f"| {mode} (training) | {results[mode]:.1f} | {results[mode] / results['synthetic']:.3f} |")
    lines += [
        "",
        f"- shards / synthetic = **{results['shards'] / results['synthetic']:.3f}** (goal ≥ 0.95)",
        f"- shards / map-style raw-mp4 loader = **{results['shards'] / results['mapstyle']:.2f}×** (goal ≥ 3×)",
        f"- loader only, per worker core: shards {results['shards loader only'] / args.workers:.1f} clips/s, "
        f"map-style {results['mapstyle loader only'] / args.workers:.1f} clips/s "
        f"(totals {results['shards loader only']:.1f} and {results['mapstyle loader only']:.1f})",
        f"- peak GPU memory (shards run): {memory_gib:.2f} GiB",
        "- per-stage ms/step (synchronized): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()),
    ]
    text = "\n".join(lines)
    print(text)
    write_section(args.results, f"Training ({gpu})", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
