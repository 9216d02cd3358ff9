r"""Adjoint Matching (Domingo-Enrich et al., ICLR 2025): the lean adjoint and the regression loss.

Goal: fine-tune a flow with base velocity $v^{\text{base}}$ so that it samples
$p^*(x) \propto p^{\text{base}}(x)\, e^{\lambda r(x)}$. Along the memoryless SDE (see
``fm_core.adaptation.memoryless``) with drift $b_t(x) = 2v_t(x) - \frac{\dot\alpha_t}{\alpha_t}x$
and diffusion $g_t = \sqrt{2\eta_t}$, a fine-tuned velocity $v^{\text{fine}}$ is the control
$u = 2(v^{\text{fine}} - v^{\text{base}})/g_t$. The *lean adjoint* solves, backwards in time along
a trajectory $X$ of the current fine-tuned model,
$$\frac{d\tilde a_t}{dt} = -\nabla_x b_t(X_t)^\top \tilde a_t, \qquad
\tilde a_1 = -\lambda \nabla r(X_1),$$
with the *base* drift, and the optimal control is $u^* = -g_t\, E[\tilde a_t \mid X_t]$.

The factor $\dot\alpha_t/\alpha_t$ is singular at $t = 0$; we solve instead for
$w_t = \tilde a_t / \alpha_t$, which obeys a regular equation with the velocity's Jacobian only:
$$\frac{dw_t}{dt} = -2\, \nabla_x v^{\text{base}}_t(X_t)^\top w_t, \qquad w_1 = -\lambda\nabla r(X_1),$$
and in these variables the optimum is
$$v^{\text{fine}}_t(x) - v^{\text{base}}_t(x) = -\kappa_t\, E[w_t \mid X_t = x], \qquad
\kappa_t = \eta_t\alpha_t = \sigma_t(\dot\alpha_t\sigma_t - \alpha_t\dot\sigma_t)$$
(CondOT: $\kappa_t = 1 - t$). ``AdjointMatchingLoss`` regresses the velocity difference on that
target. The paper's loss $\|u + g_t\tilde a_t\|^2$ is the same residual with the positive weight
$2/\eta_t$ (``weighting="control"``); a positive time weight does not move the minimiser, and the
default ``"velocity"`` weight 1 stays finite at both ends of $[0, 1]$.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.adaptation.memoryless import _grid
from fm_core.path.scheduler import Scheduler

__all__ = ["AdjointMatchingLoss", "adjoint_matching_coefficient", "lean_adjoint"]


def adjoint_matching_coefficient(scheduler: Scheduler, t: Tensor) -> Tensor:
    r"""$\kappa_t = \sigma_t(\dot\alpha_t\sigma_t - \alpha_t\dot\sigma_t)$, the shape of ``t``
    (CondOT: $1 - t$): the optimal velocity difference is $-\kappa_t E[w_t \mid x]$."""
    c = scheduler(t)
    return c.sigma_t * (c.d_alpha_t * c.sigma_t - c.alpha_t * c.d_sigma_t)


def lean_adjoint(
    base_velocity: Callable[..., Tensor],
    trajectory: Tensor,
    time_grid: Tensor | Sequence[float],
    reward: Callable[[Tensor], Tensor],
    *,
    scale: float = 1.0,
    **model_extras,
) -> Tensor:
    r"""The scaled lean adjoint $w_t = \tilde a_t/\alpha_t$ along ``trajectory``, backwards.

    Each step backwards freezes the Jacobian $J = \nabla_x v^{\text{base}}$ at the step's midpoint
    $(\tfrac{X_k + X_{k+1}}{2}, \tfrac{t_k + t_{k+1}}{2})$ and takes the second-order Taylor step of
    $e^{2hJ^\top}$: $w_k = w_{k+1} + 2h J^\top w_{k+1} + 2h^2 J^\top J^\top w_{k+1}$ (one forward,
    two vector-Jacobian products; no parameter gradients are accumulated). The paper's explicit
    step $w_k = w_{k+1} + 2h\nabla_x v(X_k, t_k)^\top w_{k+1}$ is first order: on the Gaussian test
    (``tests/adaptation``, 20 steps) it is 9.4e-2 off the closed-form adjoint, this one 2.0e-4.

    Args:
        base_velocity: the frozen base model, ``(x=..., t=..., **extras) -> velocity``.
        trajectory: ``[K + 1, B, ...]`` from ``memoryless_sample`` on ``time_grid``.
        time_grid: ``[K + 1]``, ending at 1.
        reward: ``x [B, ...] -> [B]`` differentiable reward $r$ (higher is better).
        scale: $\lambda$; the target is $p^{\text{base}} e^{\lambda r}$.
        **model_extras: forwarded to the base model.

    Returns:
        $w$ at every grid time, ``[K + 1, B, ...]``, detached.

    Example:
        >>> from fm_core.testing import GaussianFlow
        >>> flow = GaussianFlow(torch.zeros(2), 1.0)
        >>> grid = torch.linspace(0, 1, 21)
        >>> traj = memoryless_sample(flow, torch.randn(8, 2), CondOTScheduler(), grid)
        >>> w = lean_adjoint(flow, traj, grid, lambda x: x[:, 0], scale=2.0)
        >>> w.shape
        torch.Size([21, 8, 2])
    """
    if not callable(base_velocity) or not callable(reward):
        raise TypeError("base_velocity and reward must be callables")
    if not isinstance(trajectory, Tensor) or trajectory.ndim < 2:
        raise ValueError("trajectory must be a Tensor [K + 1, B, ...] from memoryless_sample")
    grid = _grid(time_grid, trajectory)
    if grid.numel() != trajectory.shape[0]:
        raise ValueError(
            f"time_grid has {grid.numel()} times but trajectory {trajectory.shape[0]} states"
        )
    if not bool(grid[-1] == 1):
        raise ValueError("time_grid must end at 1 (the reward is read at the data end)")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}")
    with torch.enable_grad():
        x1 = trajectory[-1].detach().requires_grad_(True)
        r = reward(x1)
        if r.shape != x1.shape[:1]:
            raise ValueError(
                f"reward must return shape [B] = {tuple(x1.shape[:1])}, got {tuple(r.shape)}"
            )
        (grad,) = torch.autograd.grad(r.sum(), x1)
    w = -scale * grad.detach()
    out = [w]
    h = grid.diff()
    for k in range(grid.numel() - 2, -1, -1):
        with torch.enable_grad():
            x = (0.5 * (trajectory[k] + trajectory[k + 1])).detach().requires_grad_(True)
            v = base_velocity(x=x, t=0.5 * (grid[k] + grid[k + 1]), **model_extras)
            (j1,) = torch.autograd.grad(v, x, grad_outputs=w.to(v.dtype), retain_graph=True)
            (j2,) = torch.autograd.grad(v, x, grad_outputs=j1)
        w = w + 2 * h[k] * j1.detach().to(w.dtype) + 2 * h[k] ** 2 * j2.detach().to(w.dtype)
        out.append(w)
    return torch.stack(out[::-1])


class AdjointMatchingLoss:
    r"""The Adjoint Matching regression of the velocity difference on the lean adjoint.

    $$\mathcal L = \operatorname{mean}\ \omega_t \big\|v^{\text{fine}}_t(X_t) - v^{\text{base}}_t(X_t)
    + \kappa_t w_t\big\|^2,$$
    averaged over the batch, the grid times used and the elements; $\omega_t = 1$
    (``"velocity"``) or $2/\eta_t$ (``"control"``, the paper's $\|u + g\tilde a\|^2$).

    Args:
        scheduler: the affine path's scheduler.
        weighting: ``"velocity"`` (default) or ``"control"``.

    Example:
        >>> from fm_core.testing import GaussianFlow
        >>> base, fine = GaussianFlow(torch.zeros(2), 1.0), GaussianFlow(torch.zeros(2), 1.0)
        >>> grid = torch.linspace(0, 1, 21)
        >>> traj = memoryless_sample(fine, torch.randn(8, 2), CondOTScheduler(), grid)
        >>> w = lean_adjoint(base, traj, grid, lambda x: x[:, 0], scale=1.0)
        >>> loss_fn = AdjointMatchingLoss(CondOTScheduler())
        >>> loss = loss_fn.trajectory_loss(fine, base, traj, w, grid, num_times=5)
        >>> loss.backward()
    """

    def __init__(self, scheduler: Scheduler, weighting: str = "velocity"):
        if not isinstance(scheduler, Scheduler):
            raise TypeError(f"scheduler must be a Scheduler, got {type(scheduler).__name__}")
        if weighting not in ("velocity", "control"):
            raise ValueError(f"weighting must be 'velocity' or 'control', got {weighting!r}")
        self.scheduler, self.weighting = scheduler, weighting

    def __call__(self, v_finetuned: Tensor, v_base: Tensor, adjoint: Tensor, t: Tensor) -> Tensor:
        r"""The loss at one time: velocities and adjoint ``[B, ...]``, ``t`` 0-dim in $[0, 1)$.
        Pure tensor code (compiles with ``fullgraph=True``)."""
        kappa = adjoint_matching_coefficient(self.scheduler, t)
        res = v_finetuned - v_base.detach() + kappa * adjoint.detach()
        loss = res.pow(2).mean()
        if self.weighting == "control":  # 2 / eta_t = 2 alpha_t / kappa_t
            loss = loss * (2 * self.scheduler(t).alpha_t / kappa)
        return loss

    def trajectory_loss(
        self,
        finetuned: Callable[..., Tensor],
        base: Callable[..., Tensor],
        trajectory: Tensor,
        adjoint: Tensor,
        time_grid: Tensor | Sequence[float],
        *,
        num_times: int | None = None,
        generator: torch.Generator | None = None,
        **model_extras,
    ) -> Tensor:
        r"""Mean loss over ``num_times`` grid times drawn without replacement from $[t_0, t_K)$
        (``None``: all of them), one batched call of each model per time.

        Args:
            finetuned: the trained model (gradients flow into it).
            base: the frozen base model (evaluated without gradients).
            trajectory: ``[K + 1, B, ...]`` from ``memoryless_sample``.
            adjoint: ``[K + 1, B, ...]`` from ``lean_adjoint``.
            time_grid: ``[K + 1]``.
            num_times: grid times per call (the paper subsamples them to save compute).
            generator: for the choice of times.
            **model_extras: forwarded to both models.
        """
        grid = _grid(time_grid, trajectory)
        k_total = grid.numel() - 1
        if trajectory.shape[0] != k_total + 1 or adjoint.shape != trajectory.shape:
            raise ValueError(
                f"trajectory {tuple(trajectory.shape)} and adjoint {tuple(adjoint.shape)} must "
                f"both be [{k_total + 1}, B, ...] for a grid of {k_total + 1} times"
            )
        if num_times is None:
            idx = range(k_total)
        else:
            if isinstance(num_times, bool) or not isinstance(num_times, int) or num_times < 1:
                raise ValueError(f"num_times must be a positive int, got {num_times!r}")
            idx = torch.randperm(k_total, generator=generator)[: min(num_times, k_total)].tolist()
        total = 0.0
        for k in idx:
            x, t = trajectory[k].detach(), grid[k]
            with torch.no_grad():
                vb = base(x=x, t=t, **model_extras)
            vf = finetuned(x=x, t=t, **model_extras)
            total = total + self(vf, vb, adjoint[k], t)
        return total / len(idx)
