r"""Training times for the mixture path, stratified over the global batch, with importance weights.

The generalized KL's expectation over $t \sim U[0,1]$ is the negative ELBO. Drawing the time in
another variable and weighting keeps that expectation (an unbiased estimate of the same ELBO):

- ``"uniform"``: $t = u$, weight 1;
- ``"kappa"``: $\kappa_t = u$, weight $1/\dot\kappa_t$ (the loss becomes $B/(1-\kappa)$);
- ``"elbo"``: $\kappa_t = 1 - u^2$, weight $2u/\dot\kappa_t$: the loss becomes $2B/u$, of finite
  variance (``MixturePathELBO``'s estimator).

$u$ is stratified: the global batch of $G$ samples gets $u_j = (j + U_j)/G$, and a process holding
samples ``offset .. offset + B - 1`` of it (its slice under DDP) draws exactly those strata, so the
union over processes is one stratified draw of the global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.path.scheduler.scheduler import ConvexScheduler

__all__ = ["TIME_VARIABLES", "mixture_times", "stratified_uniform"]

TIME_VARIABLES = ("uniform", "kappa", "elbo")


def stratified_uniform(
    batch_size: int,
    *,
    offset: int = 0,
    global_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``u`` ``[batch_size]`` in ``dtype`` (float64 by default): strata ``offset .. offset + batch_size - 1`` of ``global_batch_size``.

    Example:
        >>> u = stratified_uniform(4, generator=torch.Generator().manual_seed(0))
        >>> bool(((u * 4).floor() == torch.arange(4)).all())
        True
    """
    total = batch_size if global_batch_size is None else global_batch_size
    if batch_size < 1 or offset < 0 or offset + batch_size > total:
        raise ValueError(
            f"offset + batch_size must lie in [1, global_batch_size]: got offset={offset}, "
            f"batch_size={batch_size}, global_batch_size={total}"
        )
    strata = torch.arange(offset, offset + batch_size, dtype=dtype)
    return (strata + torch.rand(batch_size, generator=generator, dtype=dtype)) / total


def mixture_times(
    scheduler: ConvexScheduler, u: Tensor, variable: str = "uniform", *, eps: float = 1e-5
) -> tuple[Tensor, Tensor]:
    """Times ``t`` and importance weights (relative to $t \\sim U$) from uniforms ``u``.

    Args:
        scheduler: the path's ``ConvexScheduler`` ($\\kappa_t$).
        u: values in $[0, 1]$, any shape (clamped to $[\\epsilon, 1-\\epsilon]$).
        variable: one of ``TIME_VARIABLES``.
        eps: the clamp (default ``1e-5``).

    Returns:
        ``(t, weight)`` of the shape of ``u``.
    """
    if variable not in TIME_VARIABLES:
        raise ValueError(f"variable must be one of {TIME_VARIABLES}, got {variable!r}")
    u = u.clamp(eps, 1.0 - eps)
    if variable == "uniform":
        return u, torch.ones_like(u)
    kappa = u if variable == "kappa" else 1.0 - u * u
    t = scheduler.kappa_inverse(kappa).clamp(eps, 1.0)
    d_kappa = scheduler(t).d_alpha_t.clamp_min(1e-8)
    weight = 1.0 / d_kappa if variable == "kappa" else 2.0 * u / d_kappa
    return t, weight
