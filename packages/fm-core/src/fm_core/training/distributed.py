"""Distributed data parallel setup from ``torchrun``'s environment (nanoGPT's pattern).

The same script runs alone (``python train.py``) or under ``torchrun --nproc-per-node N`` /
``torchrun --nnodes M ...``: ``init_distributed`` reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``,
starts the process group (NCCL on CUDA, gloo on CPU) and picks the device. Nothing of ours sits
beneath PyTorch's own DDP, so PyTorch's multi-node documentation applies as is.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``DistributedDataParallel``, ``DataParallel`` and ``torch.compile``.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> unwrap_model(torch.compile(net)) is net
        True
    """
    while True:
        if isinstance(model, (DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


@dataclass
class DistributedContext:
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        rank: global rank, 0 in a single process.
        local_rank: rank on this machine (selects the CUDA device).
        world_size: number of processes.
        device: the device this process computes on.
        backend: the process-group backend (``"nccl"``, ``"gloo"``) or ``None`` in one process.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0: the process that writes checkpoints, metrics and pictures."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when a process group of more than one process is running."""
        return self.world_size > 1

    def wrap(self, model: nn.Module, **ddp_kwargs) -> nn.Module:
        """``DistributedDataParallel(model)`` in a distributed run, ``model`` itself otherwise."""
        if not self.is_distributed:
            return model
        if self.device.type == "cuda":
            ddp_kwargs.setdefault("device_ids", [self.device.index])
        return DistributedDataParallel(model, **ddp_kwargs)

    def all_reduce_mean(self, tensor: Tensor) -> Tensor:
        """The mean of ``tensor`` over all processes (a copy; ``tensor`` itself in one process)."""
        if not self.is_distributed:
            return tensor
        out = tensor.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def barrier(self) -> None:
        """Wait for every process (no-op in one process)."""
        if self.is_distributed:
            dist.barrier()

    def close(self, *, wait: bool = True) -> None:
        """Destroy the process group this context started (no-op in one process).

        Args:
            wait: every process waits for the others first (gloo aborts a process whose peer
                has already torn its connections down). Pass ``False`` on an error path: a
                peer that is still training would never reach the barrier.
        """
        if self.is_distributed and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()

    def exit_process(self, code: int = 0) -> NoReturn:
        """Close the group and end this process: :func:`exit_process`."""
        self.close()
        exit_process(code)

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=exc_type is None)  # no barrier when leaving on an exception


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"environment variable {name} must be >= 0, got {value}")
    return value


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Start (or join) the process group described by ``torchrun``'s environment variables.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is started and the context describes a
    single process on CUDA when available, else CPU.

    Args:
        backend: process-group backend; default NCCL when CUDA is available, else gloo.

    Returns:
        The :class:`DistributedContext` of this process.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or rank >= world_size:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size == 1:
        return DistributedContext(0, 0, 1, device, None)
    backend = backend or ("nccl" if cuda else "gloo")
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistributedContext(rank, local_rank, world_size, device, backend)


def exit_process(code: int = 0) -> NoReturn:
    """End a command-line process; under ``torchrun``, without interpreter teardown.

    Call it last in a CLI that may run under ``torchrun`` (the apps' entry points do). In a single
    process it is ``sys.exit(code)``. In a multi-process run it closes a process group still open,
    flushes stdout/stderr and calls ``os._exit(code)``: with gloo on torch 2.13 a process that
    returns normally sometimes aborts in a C++ static destructor after all its work is done
    ("terminate called without an active exception", exit -6), about one two-process run in six
    on our CPU machines and never in twelve runs that left through ``os._exit``; torchrun then
    reports the whole job as failed.

    Args:
        code: the exit status.
    """
    if _env_int("WORLD_SIZE", 1) <= 1:
        sys.exit(code)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
