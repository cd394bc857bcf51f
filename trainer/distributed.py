"""Process-group plumbing: DDP under `torchrun` (NCCL on GPU, gloo on CPU), one process otherwise."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    """Where this process runs and who its peers are."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when launched by torchrun with more than one process."""
        return self.world_size > 1


DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_check(requested: str) -> tuple[bool, str]:
    """A ``(usable, message)`` check of a ``--device`` value for the configurations' validation: auto, cpu,
    cuda or cuda:N, and a CUDA device only where there is one."""
    if not DEVICE_NAME.fullmatch(requested):
        return False, f"--device must be auto, cpu, cuda or cuda:N, not {requested!r}"
    found = torch.cuda.device_count() if requested.startswith("cuda") else 0
    if requested.startswith("cuda") and int(requested.partition(":")[2] or 0) >= found:
        return False, f"--device {requested}: this machine has {found} CUDA device(s); pass --device cpu or auto"
    return True, ""


def pick_device(requested: str, local_rank: int) -> torch.device:
    """``auto`` → this rank's GPU when CUDA is available, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(requested)


def setup(requested_device: str, timeout_s: float = 1800.0) -> Runtime:
    """Join the torchrun process group when launched by torchrun; a single process otherwise.

    ``timeout_s`` bounds how long a collective waits for a silent peer (a frozen node) before failing, so
    that torchrun can restart the job (``--max-restarts``).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout_s)
        )
    return Runtime(rank, local_rank, world_size, device)


def all_ranks_true(flag: bool, runtime: Runtime) -> bool:
    """True only if ``flag`` is true on every rank: ranks stop an epoch together, with equal step counts."""
    if not runtime.distributed:
        return flag
    value = torch.tensor([int(flag)], device=runtime.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_over_ranks(total: float, count: int, runtime: Runtime) -> float:
    """Global mean of a per-rank sum and count."""
    if not runtime.distributed:
        return total / max(count, 1)
    value = torch.tensor([total, float(count)], device=runtime.device, dtype=torch.float64)
    dist.all_reduce(value)
    return float(value[0] / value[1].clamp_min(1))


def gather_objects(value: Any, runtime: Runtime) -> list[Any]:
    """``value`` (any picklable object) of every rank, in rank order; ``[value]`` in a single process."""
    if not runtime.distributed:
        return [value]
    everyone: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(everyone, value)
    return everyone


def barrier(runtime: Runtime) -> None:
    """Wait for all ranks."""
    if runtime.distributed:
        dist.barrier()


def teardown(runtime: Runtime) -> None:
    """Leave the process group."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
