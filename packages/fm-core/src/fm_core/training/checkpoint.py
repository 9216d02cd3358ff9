"""Atomic, resumable checkpoints: weights in safetensors, the rest through ``weights_only`` loading.

Layout of a run directory::

    RUN_DIR/checkpoints/
        step-00001000/   model.safetensors  ema.safetensors  state.pt
        step-00002000/   ...
        latest           "step-00002000"

A checkpoint is written into a hidden temporary folder, every file is fsync'ed, and the folder is
renamed to ``step-XXXXXXXX`` (a rename is atomic on POSIX file systems); only then is ``latest``
replaced (again through a temporary file and ``os.replace``) and older checkpoints pruned. A run
killed at any moment therefore leaves its previous checkpoint intact and loses at most one interval;
leftover temporary folders are ignored by the loader and removed by the next save.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from fm_core.training.distributed import unwrap_model
from fm_core.training.seed import capture_rng_state, restore_rng_state

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the objects it is loaded into."""


@dataclass
class CheckpointState:
    """What :meth:`Checkpointer.load` returns besides the objects it filled in.

    Attributes:
        step: the training step the checkpoint was written at.
        extra: the ``extra`` dict given to :meth:`Checkpointer.save`.
        path: the checkpoint folder.
    """

    step: int
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _step_dirs(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


class Checkpointer:
    """Writes and reads the checkpoints of one run directory.

    Args:
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
        keep: how many complete checkpoints to keep (the newest), ``>= 1``.

    Example:
        >>> import tempfile
        >>> net, opt = torch.nn.Linear(2, 2), None
        >>> ckpt = Checkpointer(tempfile.mkdtemp())
        >>> _ = ckpt.save(10, model=net, extra={"epoch": 1})
        >>> state = ckpt.load(model=net)
        >>> (state.step, state.extra["epoch"])
        (10, 1)
    """

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "checkpoints"
        self.keep = keep

    # ------------------------------------------------------------------ writing
    def save(
        self,
        step: int,
        *,
        model: nn.Module,
        ema: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write a complete checkpoint for ``step`` atomically and prune old ones.

        Args:
            step: the number of optimiser steps done, ``>= 0``.
            model: the trained module (DDP / compiled wrappers are unwrapped).
            ema: an :class:`~fm_core.training.EMA` (its averaged module is stored in
                ``ema.safetensors``, its update count in ``state.pt``).
            optimizer: saved with ``state_dict()``.
            scheduler: a learning-rate scheduler, saved with ``state_dict()``.
            extra: further values to restore (tensors, numbers, strings, lists, dicts: whatever
                ``torch.load(weights_only=True)`` accepts), e.g. a data-sampler position.

        Returns:
            The checkpoint folder.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:08d}"
        tmp = self.folder / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        meta = {"format_version": str(FORMAT_VERSION), "step": str(step)}
        save_model(unwrap_model(model), str(tmp / "model.safetensors"), metadata=meta)
        state: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "rng": capture_rng_state(),
            "extra": dict(extra or {}),
        }
        if ema is not None:
            save_model(ema.module, str(tmp / "ema.safetensors"), metadata=meta)
            state["ema_n_averaged"] = ema.n_averaged.detach().cpu()
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        torch.save(state, tmp / "state.pt")
        for child in tmp.iterdir():
            _fsync_path(child)
        _fsync_path(tmp)

        final = self.folder / name
        if final.exists():  # the same step saved again: swap it in, never leave a gap
            old = self.folder / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync_path(self.folder)
        latest_tmp = self.folder / f".latest-{os.getpid()}"
        latest_tmp.write_text(name + "\n")
        _fsync_path(latest_tmp)
        os.replace(latest_tmp, self.folder / "latest")
        _fsync_path(self.folder)
        self._prune(current=final)
        return final

    def _prune(self, current: Path) -> None:
        complete = _step_dirs(self.folder)
        for _, path in complete[: max(len(complete) - self.keep, 0)]:
            if path != current:
                shutil.rmtree(path, ignore_errors=True)
        for child in self.folder.iterdir():  # leftovers of runs killed mid-write
            if child.name.startswith((".tmp-", ".old-")) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)

    # ------------------------------------------------------------------ reading
    def steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, ascending."""
        return [step for step, _ in _step_dirs(self.folder)]

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None`` when there is none."""
        path = self._resolve(None, missing_ok=True)
        return None if path is None else int(_STEP_DIR.match(path.name).group(1))

    def _resolve(self, step: int | None, missing_ok: bool = False) -> Path | None:
        if step is not None:
            path = self.folder / f"step-{step:08d}"
            if not path.is_dir():
                raise CheckpointError(f"no checkpoint for step {step} in {self.folder}")
            return path
        latest = self.folder / "latest"
        if latest.is_file():
            named = self.folder / latest.read_text().strip()
            if _STEP_DIR.match(named.name) and named.is_dir():
                return named
        found = _step_dirs(self.folder)  # `latest` missing or stale: the newest complete one
        if found:
            return found[-1][1]
        if missing_ok:
            return None
        raise CheckpointError(f"no checkpoint in {self.folder}")

    def load(
        self,
        *,
        model: nn.Module,
        ema: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        step: int | None = None,
        map_location: str | torch.device = "cpu",
        restore_rng: bool = True,
    ) -> CheckpointState:
        """Load a checkpoint (the newest by default) into the given objects.

        The weight files are read and checked against the modules' keys and shapes before any
        module is modified, so a corrupt or mismatched weight file leaves the objects as they
        were; the optimizer and scheduler states are checked by their own ``load_state_dict``.

        Args:
            model: receives ``model.safetensors`` (strictly: every key, every shape).
            ema: receives ``ema.safetensors`` and the update count, when given.
            optimizer: receives the optimiser state, when given.
            scheduler: receives the scheduler state, when given.
            step: load this step instead of the newest.
            map_location: where tensors of ``state.pt`` are loaded.
            restore_rng: restore the global RNG states saved with the checkpoint.

        Returns:
            The checkpoint's step, ``extra`` dict and folder.

        Raises:
            CheckpointError: no checkpoint, a corrupt or incomplete one, or one whose tensors do not
                fit ``model``/``ema``/``optimizer``.
        """
        path = self._resolve(step)
        files = ["model.safetensors", "state.pt"] + (["ema.safetensors"] if ema is not None else [])
        for name in files:
            if not (path / name).is_file():
                raise CheckpointError(f"checkpoint {path} has no {name}")
        try:
            state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
        except Exception as err:  # pickle/zip errors of a corrupt file
            raise CheckpointError(f"cannot read {path / 'state.pt'}: {err}") from err
        if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path / 'state.pt'} is not an fm checkpoint of this version")
        if optimizer is not None and "optimizer" not in state:
            raise CheckpointError(f"checkpoint {path} holds no optimizer state")
        if scheduler is not None and "scheduler" not in state:
            raise CheckpointError(f"checkpoint {path} holds no scheduler state")

        targets = [(unwrap_model(model), path / "model.safetensors")]
        if ema is not None:
            targets.append((ema.module, path / "ema.safetensors"))
        device = str(next(iter(unwrap_model(model).parameters())).device)
        for module, file in targets:  # check before touching anything
            _check_fits(module, file)
        for module, file in targets:
            try:
                load_model(module, str(file), strict=True, device=device)
            except (SafetensorError, RuntimeError, OSError) as err:
                raise CheckpointError(f"cannot load {file}: {err}") from err
        if ema is not None and "ema_n_averaged" in state:
            ema.n_averaged.copy_(state["ema_n_averaged"])
        if optimizer is not None:
            try:
                optimizer.load_state_dict(state["optimizer"])
            except (ValueError, KeyError, RuntimeError) as err:
                raise CheckpointError(f"optimizer state of {path} does not fit: {err}") from err
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if restore_rng:
            restore_rng_state(state["rng"])
        return CheckpointState(step=int(state["step"]), extra=state.get("extra", {}), path=path)


def _check_fits(module: nn.Module, file: Path) -> None:
    """Raise CheckpointError unless every tensor in ``file`` matches ``module``'s by name and shape."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {file}: {err}") from err
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{file} does not fit the model: unexpected tensors {unexpected[:3]}"
            + (" ..." if len(unexpected) > 3 else "")
        )
    for key, shape in shapes.items():
        if expected[key] != shape:
            raise CheckpointError(
                f"{file} does not fit the model: {key} has shape {list(shape)}, "
                f"the model expects {list(expected[key])}"
            )


def load_weights(
    run_dir: str | os.PathLike,
    module: nn.Module,
    *,
    ema: bool = True,
    step: int | None = None,
    map_location: str | torch.device = "cpu",
) -> int:
    """Load a run's weights (the EMA copy by default) into ``module`` for sampling or evaluation.

    Args:
        run_dir: the run directory given to :class:`Checkpointer`.
        module: a module of the run's architecture.
        ema: load the EMA weights when the checkpoint has them (else the raw weights).
        step: a specific step instead of the newest.
        map_location: device for the loaded tensors.

    Returns:
        The step of the loaded checkpoint.
    """
    ckpt = Checkpointer(run_dir)
    path = ckpt._resolve(step)
    file = path / "ema.safetensors"
    if not (ema and file.is_file()):
        file = path / "model.safetensors"
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path} has no model.safetensors")
    _check_fits(module, file)
    try:
        load_model(module, str(file), strict=True, device=str(map_location))
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(f"cannot load {file}: {err}") from err
    return int(_STEP_DIR.match(path.name).group(1))
