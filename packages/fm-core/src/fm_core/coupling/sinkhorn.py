r"""Entropic optimal transport: log-domain Sinkhorn iterations in torch."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from fm_core.utils.checks import check_floating

__all__ = ["sinkhorn_plan"]


def sinkhorn_plan(
    cost: Tensor,
    reg: float,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""The entropic OT plan between uniform marginals, $\min_\pi \langle \pi, C\rangle - \varepsilon H(\pi)$.

    With $a = \mathbf 1/N$, $b = \mathbf 1/M$ and $\varepsilon$ = ``reg``, the plan is
    $\pi_{ij} = \exp\big((f_i + g_j - C_{ij})/\varepsilon\big)$, where the potentials alternate
    $f_i = -\varepsilon \log\sum_j \exp\big((g_j - C_{ij})/\varepsilon\big) + \varepsilon\log a_i$
    and likewise for $g$. Working with potentials and ``logsumexp`` (the log domain) never
    forms $e^{-C/\varepsilon}$, so small ``reg`` does not underflow (POT's default
    ``ot.sinkhorn`` does, and torchcfm then falls back to the uniform plan). Iteration stops when
    the row marginals are within ``tol`` in $\ell_1$ (checked every 10 iterations) or after
    ``max_iter`` iterations, with a ``RuntimeWarning`` if not converged; the number of
    iterations grows like $\max C / \varepsilon$. ``reg`` is in the units of ``cost``.

    Args:
        cost: floating cost matrix, shape ``[N, M]`` (finite).
        reg: $\varepsilon > 0$.
        max_iter: maximum number of iterations.
        tol: stopping tolerance on $\lVert \pi\mathbf 1 - a\rVert_1$.
        dtype: the working dtype (default float64).

    Returns:
        The plan $\pi$, shape ``[N, M]``, in ``dtype``, with column sums $1/M$ and row sums $1/N$
        (up to ``tol``).

    Example:
        >>> plan = sinkhorn_plan(torch.rand(4, 4), reg=0.1)
        >>> plan.sum()
        tensor(1.0000, dtype=torch.float64)
    """
    check_floating(cost, "cost")
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"cost must be a non-empty matrix [N, M], got shape {tuple(cost.shape)}")
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg > 0:
        raise ValueError(f"reg must be a positive number, got {reg!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    n, m = cost.shape
    k = -cost.detach().to(dtype) / reg
    if not bool(torch.isfinite(k).all()):
        raise ValueError("cost / reg must be finite")
    log_a, log_b = -math.log(n), -math.log(m)
    f = torch.zeros(n, dtype=dtype, device=cost.device)  # potentials divided by reg
    g = torch.zeros(m, dtype=dtype, device=cost.device)
    err = float("inf")
    for it in range(max_iter):
        f = log_a - torch.logsumexp(k + g[None, :], dim=1)
        g = log_b - torch.logsumexp(k + f[:, None], dim=0)
        if it % 10 == 9 or it == max_iter - 1:
            rows = torch.logsumexp(k + f[:, None] + g[None, :], dim=1).exp()
            err = (rows - 1.0 / n).abs().sum().item()
            if err < tol:
                break
    if err >= tol:
        warnings.warn(
            f"sinkhorn_plan did not converge in max_iter={max_iter} iterations (row-marginal "
            f"error {err:.2e} > tol={tol:g}); raise reg or max_iter",
            RuntimeWarning,
            stacklevel=2,
        )
    return torch.exp(k + f[:, None] + g[None, :])
