r"""Minibatch optimal-transport couplings: re-pair $x_0$ and $x_1$ before sampling the path.

Minibatch OT (Tong et al., 2023; Pooladian et al., 2023) pairs each source sample with a target
sample so that the pairs are (close to) an optimal transport plan for the cost
$C_{ij} = \lVert x_0^{(i)} - x_1^{(j)}\rVert^2$ within the batch, which straightens the learned
flow. Everything runs in torch on the tensors' device; torchcfm's ``OTPlanSampler`` instead
moves the cost to the CPU and solves with POT.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fm_core.coupling.auction import auction_assignment
from fm_core.coupling.cost import squared_euclidean_cost
from fm_core.coupling.sinkhorn import sinkhorn_plan
from fm_core.utils.checks import (
    check_batch_size,
    check_finite,
    check_floating,
    check_same_device,
    check_tensor,
)

__all__ = ["Coupling", "CouplingSample", "ExactOTCoupling", "SinkhornOTCoupling"]

CostFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class CouplingSample:
    r"""Paired minibatches: ``x_0[i]`` is transported to ``x_1[i]``.

    Attributes:
        x_0: source samples in pairing order, ``x_0_in[index_0]``, shape ``[B, ...]``.
        x_1: target samples in pairing order, ``x_1_in[index_1]``, shape ``[B, ...]``.
        index_0: int64 indices into the input ``x_0``, shape ``[B]`` (``arange(B)``: sources keep
            their order).
        index_1: int64 indices into the input ``x_1``, shape ``[B]`` (a permutation for exact OT).
        y_0: source labels re-ordered like ``x_0``, shape ``[B]``, or ``None``.
        y_1: target labels re-ordered like ``x_1``, shape ``[B]``, or ``None``.
    """

    x_0: Tensor
    x_1: Tensor
    index_0: Tensor
    index_1: Tensor
    y_0: Tensor | None = None
    y_1: Tensor | None = None


def _label_groups(
    y_0: Tensor | None, y_1: Tensor | None, batch: int
) -> list[tuple[Tensor, Tensor]]:
    """Row and column indices of each label class (one group of everything without labels)."""
    if (y_0 is None) != (y_1 is None):
        raise ValueError("pass both y_0 and y_1 (labels of x_0 and x_1) or neither")
    if y_0 is None or y_1 is None:
        everything = torch.arange(batch)
        return [(everything, everything)]
    for name, y in (("y_0", y_0), ("y_1", y_1)):
        check_tensor(y, name)
        if y.shape != (batch,):
            raise ValueError(f"{name} must have shape [B] = [{batch}], got {tuple(y.shape)}")
    if not torch.equal(torch.sort(y_0).values, torch.sort(y_1.to(y_0.dtype)).values):
        raise ValueError(
            "y_0 and y_1 must hold each label equally often: pairing within labels needs as many "
            "sources as targets in every class"
        )
    groups = []
    for label in torch.unique(y_0):
        groups.append(
            ((y_0 == label).nonzero().squeeze(1).cpu(), (y_1 == label).nonzero().squeeze(1).cpu())
        )
    return groups


class Coupling(ABC):
    r"""Pairs a source minibatch with a target minibatch: $(x_0, x_1) \mapsto$ ``CouplingSample``.

    ``__call__`` checks the inputs and, when labels are given, pairs only samples with equal
    labels (each class solved on its own). Subclasses implement ``_pair(cost, generator)``,
    returning for each row of a square cost matrix the column it is paired with.

    Args:
        cost_fn: ``cost_fn(a, b)`` for flattened batches ``[N, D]``, ``[M, D]`` returning ``[N, M]``
            (default ``None``: squared Euclidean distance).
    """

    def __init__(self, cost_fn: CostFn | None = None) -> None:
        if cost_fn is not None and not callable(cost_fn):
            raise TypeError(f"cost_fn must be callable or None, got {type(cost_fn).__name__}")
        self.cost_fn = cost_fn

    def cost(self, x_0: Tensor, x_1: Tensor) -> Tensor:
        """The ``[N, M]`` cost matrix between the flattened batches."""
        if self.cost_fn is None:
            return squared_euclidean_cost(x_0, x_1)
        return self.cost_fn(x_0.reshape(x_0.shape[0], -1), x_1.reshape(x_1.shape[0], -1))

    @abstractmethod
    def _pair(self, cost: Tensor, generator: torch.Generator | None) -> Tensor: ...

    def __call__(
        self,
        x_0: Tensor,
        x_1: Tensor,
        *,
        y_0: Tensor | None = None,
        y_1: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> CouplingSample:
        """Pair ``x_0`` (``[B, ...]``) with ``x_1`` (``[B, ...]``), optionally within labels.

        Args:
            x_0: source samples, floating, shape ``[B, ...]``.
            x_1: target samples, shape of ``x_0``.
            y_0: labels of ``x_0``, shape ``[B]`` (with ``y_1``), or ``None``.
            y_1: labels of ``x_1``, shape ``[B]``; every label must occur in ``y_1`` as often as
                in ``y_0``.
            generator: for the couplings that sample (Sinkhorn).

        Returns:
            A ``CouplingSample``; ``x_0`` keeps its order and ``x_1`` is re-ordered.
        """
        check_floating(x_0, "x_0")
        check_floating(x_1, "x_1")
        check_batch_size(x_0, "x_0")
        check_same_device([("x_0", x_0), ("x_1", x_1), ("y_0", y_0), ("y_1", y_1)])
        if x_1.shape != x_0.shape:
            raise ValueError(
                f"x_1 must have the shape of x_0 (same batch size and sample shape): expected "
                f"{tuple(x_0.shape)}, got {tuple(x_1.shape)}"
            )
        batch = x_0.shape[0]
        groups = _label_groups(y_0, y_1, batch)
        with torch.no_grad():
            cost = self.cost(x_0, x_1)
            # SciPy's own message ("matrix contains invalid numeric entries") names nothing.
            check_finite(cost, "the cost between x_0 and x_1", hint="x_0 or x_1 holds NaN or inf")
            if len(groups) == 1:
                index_1 = self._pair(cost, generator)
            else:
                index_1 = torch.empty(batch, dtype=torch.long, device=x_0.device)
                for rows, cols in groups:
                    rows, cols = rows.to(x_0.device), cols.to(x_0.device)
                    sub = cost[rows[:, None], cols[None, :]]
                    index_1[rows] = cols[self._pair(sub, generator)]
        index_0 = torch.arange(batch, device=x_0.device)
        return CouplingSample(
            x_0=x_0,
            x_1=x_1[index_1],
            index_0=index_0,
            index_1=index_1,
            y_0=y_0,
            y_1=None if y_1 is None else y_1[index_1],
        )


class ExactOTCoupling(Coupling):
    r"""Exact minibatch OT: the permutation $\pi$ minimising $\sum_i C_{i\pi(i)}$.

    Solved in torch on the batch's device by ``auction_assignment`` (auction with
    $\epsilon$-scaling in float64): the total cost is within ``tol`` times the cost range of the
    optimum, which in practice is the optimum itself. With uniform weights and equal batch sizes
    an optimal plan is a permutation (Birkhoff), so this equals torchcfm's
    ``OTPlanSampler("exact")`` plan without its sampling noise.

    **Solver.** ``solver="auto"`` (the default) solves CPU batches with SciPy's exact
    ``linear_sum_assignment`` when SciPy is importable (a C implementation, 2.6-26x faster than
    the auction on CPU at D=2, idle machine; see ``benchmarks/results/couplings.md``) and everything else with
    the auction on the tensors' device. ``"auction"`` and ``"scipy"`` force one of them.

    Args:
        cost_fn: see ``Coupling`` (default: squared Euclidean).
        tol: relative accuracy of the auction (default ``1e-9``).
        solver: ``"auto"``, ``"auction"`` or ``"scipy"``.

    Example:
        >>> pairs = ExactOTCoupling()(torch.randn(64, 2), torch.randn(64, 2) + 3)
        >>> pairs.x_1.shape, pairs.index_1.shape
        (torch.Size([64, 2]), torch.Size([64]))
    """

    def __init__(
        self, cost_fn: CostFn | None = None, *, tol: float = 1e-9, solver: str = "auto"
    ) -> None:
        super().__init__(cost_fn)
        if not 0.0 < tol < 1.0:
            raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
        if solver not in ("auto", "auction", "scipy"):
            raise ValueError(f"solver must be 'auto', 'auction' or 'scipy', got {solver!r}")
        if solver == "scipy" and _scipy_assignment() is None:
            raise ImportError("solver='scipy' needs SciPy: pip install scipy")
        self.tol = tol
        self.solver = solver

    def _pair(self, cost: Tensor, generator: torch.Generator | None) -> Tensor:
        use_scipy = self.solver == "scipy" or (
            self.solver == "auto" and cost.device.type == "cpu" and _scipy_assignment() is not None
        )
        if use_scipy:
            rows, cols = _scipy_assignment()(cost.double().numpy())
            return torch.as_tensor(cols[rows.argsort()], dtype=torch.long).to(cost.device)
        return auction_assignment(cost, tol=self.tol)


def _scipy_assignment():
    """SciPy's exact assignment solver, or ``None`` when SciPy is not installed (it is optional)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return None
    return linear_sum_assignment


class SinkhornOTCoupling(Coupling):
    r"""Entropic minibatch OT: pair each $x_0^{(i)}$ with $x_1^{(j)}$, $j \sim \pi_{i\cdot}/\sum_j \pi_{ij}$.

    $\pi$ is the Sinkhorn plan (``sinkhorn_plan``, log domain). Each source is kept once and draws
    its partner from its row of the plan, so targets may repeat (torchcfm instead draws $(i, j)$
    pairs from the whole plan, which also repeats sources). By default the cost is divided by its
    maximum first, so ``reg`` is relative to the largest squared distance in the batch (torchcfm's
    ``normalize_cost=True``); ``reg`` $\to 0$ approaches exact OT, large ``reg`` the independent
    coupling.

    Args:
        reg: entropic regularisation $\varepsilon > 0$ (default 0.05).
        cost_fn: see ``Coupling`` (default: squared Euclidean).
        normalize_cost: divide the cost by its maximum (default ``True``).
        max_iter: maximum Sinkhorn iterations (default 1000).
        tol: marginal tolerance (default ``1e-6``).

    Example:
        >>> coupling = SinkhornOTCoupling(reg=0.05)
        >>> pairs = coupling(torch.randn(64, 2), torch.randn(64, 2) + 3)
        >>> coupling.plan(torch.randn(8, 2), torch.randn(8, 2)).sum()
        tensor(1.0000, dtype=torch.float64)
    """

    def __init__(
        self,
        reg: float = 0.05,
        cost_fn: CostFn | None = None,
        *,
        normalize_cost: bool = True,
        max_iter: int = 1000,
        tol: float = 1e-6,
    ) -> None:
        super().__init__(cost_fn)
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg > 0:
            raise ValueError(f"reg must be a positive number, got {reg!r}")
        self.reg = float(reg)
        self.normalize_cost = normalize_cost
        self.max_iter = max_iter
        self.tol = tol

    def _plan(self, cost: Tensor) -> Tensor:
        if self.normalize_cost:
            top = cost.max()
            cost = cost / top if top.item() > 0 else cost
        return sinkhorn_plan(cost, self.reg, max_iter=self.max_iter, tol=self.tol)

    def plan(self, x_0: Tensor, x_1: Tensor) -> Tensor:
        """The entropic plan between the batches ``[N, ...]`` and ``[M, ...]``, shape ``[N, M]``."""
        with torch.no_grad():
            return self._plan(self.cost(x_0, x_1))

    def _pair(self, cost: Tensor, generator: torch.Generator | None) -> Tensor:
        plan = self._plan(cost)
        return torch.multinomial(plan, 1, generator=generator).squeeze(1)
