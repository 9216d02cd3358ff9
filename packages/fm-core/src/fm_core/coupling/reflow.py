r"""Reflow (Liu et al., 2023, "rectified flow"): pair noise with the sample a trained flow makes of it.

A model trained on independent pairs $(x_0, x_1)$ learns curved paths. Integrating it from
fresh noise gives pairs $(x_0, \hat x_1 = \phi_1(x_0))$ that the flow already connects, so a model
trained on them (the same loss, the same path) learns straighter paths that take fewer steps.
``generate_reflow_pairs`` writes such pairs to a folder of shards with ``ODESolver`` (batched,
resumable: a finished shard is never recomputed, and each shard's noise depends only on the seed
and the shard's index); ``ReflowCoupling`` serves them as minibatches. With ``times`` it also
stores the states of each trajectory at those times, the targets of flow-map distillation
(a jump from $t_i$ to $t_j$ of the teacher's flow is $x_{t_j} - x_{t_i}$).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from fm_core.coupling.ot import Coupling, CouplingSample
from fm_core.solver.ode_solver import ODESolver

__all__ = ["ReflowCoupling", "generate_reflow_pairs"]

_META = "reflow.json"


def _shard(folder: Path, i: int) -> Path:
    return folder / f"pairs-{i:05d}.pt"


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def generate_reflow_pairs(
    velocity_model: Callable[..., Tensor],
    folder: str | os.PathLike,
    *,
    num: int,
    batch_size: int,
    shape: Sequence[int],
    num_classes: int = 0,
    label_key: str = "label",
    seed: int = 0,
    step_size: float | None = 0.05,
    method: str = "midpoint",
    device: torch.device | str = "cpu",
    times: Sequence[float] | None = None,
    **model_extras,
) -> Path:
    r"""Write ``num`` pairs $(x_0, \phi_1(x_0))$ of ``velocity_model``'s flow into ``folder``.

    Shard ``i`` holds ``batch_size`` pairs (the last one fewer) drawn with the generator seeded
    ``seed + i``: ``x_0`` standard normal of ``shape``, and with ``num_classes > 0`` labels
    uniform in ``[0, num_classes)`` passed to the model as ``label_key``. Existing shards are
    kept, so an interrupted call continues where it stopped and gives the same pairs.

    Args:
        velocity_model: called ``velocity_model(x=x, t=t, **extras)`` as by ``ODESolver``.
        folder: the output folder (created); it holds ``reflow.json`` and ``pairs-NNNNN.pt``.
        num: number of pairs, >= 1.
        batch_size: pairs per shard (one ODE solve each), >= 1.
        shape: the shape of one sample, e.g. ``(1, 8, 8)``.
        num_classes: labels to draw (0: unconditional).
        label_key: the model extra that takes the labels.
        seed: base seed.
        step_size: ``ODESolver`` step size (``None`` with an adaptive ``method``).
        method: ``ODESolver`` method.
        device: where to solve.
        times: also store the states at these times, strictly increasing from 0 to 1 (each
            interval is cut into steps no larger than ``step_size``), as ``x_t`` of shape
            ``[n, len(times), *shape]``; ``None`` (default): only the end points.
        **model_extras: further model extras (e.g. a guidance scale).

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        ValueError: bad sizes, or a folder written with other settings.
    """
    for name, v in (("num", num), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    folder = Path(folder)
    meta = {"num": num, "batch_size": batch_size, "shape": list(shape), "seed": seed,
            "num_classes": num_classes, "method": method, "step_size": step_size}  # fmt: skip
    grid = None
    if times is not None:
        grid = torch.as_tensor(times, dtype=torch.float32).flatten()
        ok = grid.numel() >= 2 and bool((grid[1:] > grid[:-1]).all())
        if not ok or float(grid[0]) != 0.0 or float(grid[-1]) != 1.0:
            raise ValueError(
                f"times must increase strictly from 0 to 1 (at least two), got {list(times)}"
            )
        meta["times"] = grid.tolist()
    meta_path = folder / _META
    if meta_path.is_file():
        stored = json.loads(meta_path.read_text())
        if stored != meta:
            raise ValueError(
                f"{folder} holds reflow pairs made with other settings ({stored}); pick a new folder"
            )
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta))
    solver = ODESolver(velocity_model)
    for i in range((num + batch_size - 1) // batch_size):
        path = _shard(folder, i)
        if path.is_file():
            continue
        n = min(batch_size, num - i * batch_size)
        g = torch.Generator().manual_seed(seed + i)
        x_0 = torch.randn((n, *shape), generator=g)
        extras = dict(model_extras)
        labels = None
        if num_classes:
            labels = torch.randint(0, num_classes, (n,), generator=g)
            extras[label_key] = labels.to(device)
        with torch.no_grad():
            x = solver.sample(
                x_0.to(device), step_size=step_size, method=method,
                time_grid=None if grid is None else grid.to(device),
                return_intermediates=grid is not None, **extras,
            )  # fmt: skip
        shard = {"labels": labels, "x_0": x_0}
        if grid is None:
            shard["x_1"] = x.cpu()
        else:
            shard["x_1"], shard["x_t"] = x[-1].cpu(), x.transpose(0, 1).cpu()
        _save_atomic(shard, path)
    return folder


class ReflowCoupling(Coupling):
    r"""Minibatches of stored reflow pairs: the coupling $(x_0, \phi_1(x_0))$ of a trained flow.

    Unlike the OT couplings, which re-pair a given batch, this coupling *replaces* the pairs:
    ``coupling(x_0, x_1, y_1=labels)`` returns as many stored pairs as ``x_0`` has rows (drawn
    uniformly with replacement; with labels, pairs of those labels), so both ``x_0`` and ``x_1``
    of the result must be used. ``sample(batch_size)`` does the same without input batches.
    Train on them with the ordinary loss and path.

    Attributes: ``x_0``, ``x_1`` (``[N, ...]``), ``labels`` (``[N]`` or ``None``), and with stored
    trajectories ``times`` (``[K]``) and ``x_t`` (``[N, K, ...]``), else ``None``.

    Args:
        folder: a folder written by ``generate_reflow_pairs`` (complete).

    Example:
        >>> pairs = ReflowCoupling(folder)  # doctest: +SKIP
        >>> batch = pairs.sample(256, generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__(None)
        folder = Path(folder)
        meta_path = folder / _META
        if not meta_path.is_file():
            raise ValueError(f"{folder} holds no reflow pairs (no {_META}; generate them first)")
        meta = json.loads(meta_path.read_text())
        shards = (meta["num"] + meta["batch_size"] - 1) // meta["batch_size"]
        missing = [i for i in range(shards) if not _shard(folder, i).is_file()]
        if missing:
            raise ValueError(
                f"{folder} is incomplete: {len(missing)} of {shards} shards missing (run "
                "generate_reflow_pairs again with the same settings to finish it)"
            )
        parts = [torch.load(_shard(folder, i), weights_only=True) for i in range(shards)]
        self.x_0 = torch.cat([p["x_0"] for p in parts])
        self.x_1 = torch.cat([p["x_1"] for p in parts])
        self.labels = torch.cat([p["labels"] for p in parts]) if meta["num_classes"] else None
        self.times = torch.tensor(meta["times"]) if "times" in meta else None
        self.x_t = torch.cat([p["x_t"] for p in parts]) if "times" in meta else None

    def _pair(self, cost: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError("ReflowCoupling replaces pairs; it does not re-pair by a cost")

    def __call__(
        self,
        x_0: Tensor,
        x_1: Tensor,
        *,
        y_0: Tensor | None = None,
        y_1: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> CouplingSample:
        """Stored pairs for a batch the size of ``x_0`` (with labels ``y_1``), on its device."""
        pairs = self.sample(x_0.shape[0], labels=y_1, generator=generator)
        dev = x_0.device
        return CouplingSample(
            x_0=pairs.x_0.to(dev, x_0.dtype), x_1=pairs.x_1.to(dev, x_0.dtype),
            index_0=pairs.index_0.to(dev), index_1=pairs.index_1.to(dev),
            y_0=None if pairs.y_0 is None else pairs.y_0.to(dev),
            y_1=None if pairs.y_1 is None else pairs.y_1.to(dev),
        )  # fmt: skip

    def __len__(self) -> int:
        return self.x_0.shape[0]

    def sample(
        self,
        batch_size: int,
        *,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> CouplingSample:
        """``batch_size`` stored pairs; with ``labels`` (``[batch_size]``), pairs of those labels.

        Returns:
            A ``CouplingSample`` (``index_0 == index_1``: the stored indices; ``y_0 == y_1``).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if labels is None:
            idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        else:
            if self.labels is None:
                raise ValueError("labels given, but these pairs were generated without labels")
            if labels.shape != (batch_size,):
                raise ValueError(
                    f"labels must have shape [{batch_size}], got {tuple(labels.shape)}"
                )
            # one uniform draw within each label's stored pairs
            order = torch.argsort(self.labels, stable=True)
            counts = torch.bincount(self.labels, minlength=int(labels.max()) + 1)
            starts = torch.cumsum(counts, 0) - counts
            lab = labels.cpu()
            if bool((counts[lab] == 0).any()):
                raise ValueError("a requested label has no stored pair")
            u = torch.rand(batch_size, generator=generator)
            idx = order[starts[lab] + (u * counts[lab]).long().clamp(max=counts[lab] - 1)]
        y = None if self.labels is None else self.labels[idx]
        return CouplingSample(
            x_0=self.x_0[idx], x_1=self.x_1[idx], index_0=idx, index_1=idx, y_0=y, y_1=y
        )
