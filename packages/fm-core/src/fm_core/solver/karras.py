r"""The EDM / Karras $\rho$-spaced time grid, mapped to flow-matching time through a scheduler."""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.path.scheduler.convex import CondOTScheduler
from fm_core.path.scheduler.scheduler import Scheduler

__all__ = ["karras_time_grid"]


def karras_time_grid(
    num_steps: int,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    scheduler: Scheduler | None = None,
    start_at_zero: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""The grid of Karras et al. (2022, EDM), eq. 5, as flow-matching times in $[0, 1]$.

    EDM spaces noise levels as
    $\sigma_i = \big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N-1}(\sigma_{\min}^{1/\rho} -
    \sigma_{\max}^{1/\rho})\big)^{\rho}$, $i = 0..N-1$, then $\sigma_N = 0$: small steps near
    the data, where the flow bends most. With an affine path, noise level $\sigma$ is the inverse
    signal-to-noise ratio $\sigma_t / \alpha_t$, so $t_i = \mathrm{snr}^{-1}(1/\sigma_i)$ (for
    CondOT, $t = 1/(1+\sigma)$) and $t_N = 1$.

    Args:
        num_steps: $N \ge 1$ steps (the grid has $N + 1$ times).
        sigma_min: smallest non-zero noise level.
        sigma_max: largest noise level.
        rho: $\rho$; larger concentrates steps near the data ($t = 1$). EDM uses 7.
        scheduler: the path's scheduler (``CondOTScheduler()`` by default).
        start_at_zero: replace $t_0 = \mathrm{snr}^{-1}(1/\sigma_{\max})$ by 0, so that the
            solve starts from the source distribution itself (for CondOT $t_0 = 1/81$ otherwise).
        dtype: dtype of the grid.
        device: device of the grid.

    Returns:
        Increasing times, shape ``[num_steps + 1]``; pass as ``time_grid`` with ``step_size=None``.

    Example:
        >>> grid = karras_time_grid(18)
        >>> grid.shape
        torch.Size([19])
        >>> x_0 = torch.randn(4, 2)
        >>> x_1 = ODESolver(lambda x, t: -x).sample(x_0, step_size=None, method="heun2",
        ...                                         time_grid=grid)
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, got "
            f"sigma_min={sigma_min}, sigma_max={sigma_max}"
        )
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    scheduler = CondOTScheduler() if scheduler is None else scheduler
    i = torch.linspace(0, 1, num_steps, dtype=torch.float64) if num_steps > 1 else torch.zeros(1)
    inv_rho = 1.0 / rho
    sigmas = (sigma_max**inv_rho + i.double() * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    times = scheduler.snr_inverse(1.0 / sigmas).double()
    if start_at_zero:
        times[0] = 0.0
    grid = torch.cat([times, torch.ones(1, dtype=torch.float64)]).clamp(0.0, 1.0)
    if not bool((grid.diff() > 0).all()):
        raise ValueError(
            f"karras_time_grid: the grid is not increasing for scheduler {scheduler!r} with "
            f"sigma_min={sigma_min}, sigma_max={sigma_max}; widen the range or change scheduler"
        )
    return grid.to(dtype=dtype, device=device)
