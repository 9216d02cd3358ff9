r"""The adaptive Dormand–Prince 5(4) method with error control by ``atol`` / ``rtol``.

Step-size control needs the error norm on the host, so this method synchronises once per step
(every adaptive solver does); the fixed-step methods never do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from fm_core.solver._moves import Move, euclidean_move
from fm_core.solver._state import State, lincomb
from fm_core.solver._tableau import DOPRI5

__all__ = ["Dopri5"]

# The Dormand & Prince (1980) tableau, as floats (``h * a`` with Python-float ``h``).
_A = tuple(tuple(float(v) for v in row) for row in DOPRI5.a)
_C = tuple(float(v) for v in DOPRI5.c)
_E = tuple(float(v) for v in DOPRI5.b_error)  # 5th-order weights minus the embedded 4th-order


def _rms_norm(y: State, scale: State) -> float:
    """Max over components of the RMS of ``y / scale`` (one host synchronisation)."""
    norms = [
        (yi.detach() / si.detach()).float().pow(2).mean().sqrt()
        for yi, si in zip(y, scale, strict=True)
    ]
    return float(torch.stack(norms).max())


class Dopri5:
    r"""Dormand–Prince 5(4): order 5, 6 new evaluations per accepted step (first-same-as-last).

    The local error estimate $e$ (difference of the embedded 5th and 4th order solutions) is
    scaled by $\mathrm{atol} + \mathrm{rtol}\max(|y_n|, |y_{n+1}|)$; a step is accepted when the
    RMS of the scaled error is $\le 1$, and the next step is
    $h \cdot \mathrm{clip}(0.9\, \|e\|^{-1/5}, 0.2, 10)$. Every time of the requested grid is hit
    exactly (steps are shortened to land on it). The first step follows Hairer, Nørsett &
    Wanner (II.4), costing one extra evaluation.

    Example:
        >>> x_1 = ODESolver(lambda x, t: -x).sample(
        ...     torch.ones(2, 1), step_size=None, method="dopri5", atol=1e-6, rtol=1e-6
        ... )
        >>> x_1  # exp(-1) = 0.3679
        tensor([[0.3679],
                [0.3679]])
    """

    name = "dopri5"
    order = 5
    stages = 6
    adaptive = True

    def __init__(self, max_num_steps: int = 100_000):
        self.max_num_steps = max_num_steps
        self.num_accepted = 0
        self.num_rejected = 0

    def __repr__(self) -> str:
        return "Dopri5()"

    def integrate(
        self,
        f: Callable[[Tensor, State], State],
        y0: State,
        knots: list[float],
        *,
        atol: float,
        rtol: float,
        use_checkpoint: bool = False,
        move: Move = euclidean_move,
    ) -> list[State]:
        """Integrate through ``knots`` (monotone Python floats); return the state at each knot.

        ``move`` advances a state by combined stage velocities (``y + w`` by default; a manifold
        move on manifolds: see ``fm_core.solver._moves``).
        """
        ref = y0[0]
        tt = lambda s: torch.tensor(s, dtype=_time_dtype(ref), device=ref.device)
        t = knots[0]
        direction = 1.0 if knots[-1] > knots[0] else -1.0
        out = [y0]
        y = y0
        k1 = f(tt(t), y)
        h = direction * self._initial_step(f, t, direction, y, k1, atol, rtol, tt, move)
        self.num_accepted = self.num_rejected = 0
        step = _checkpointed(_dopri_step) if use_checkpoint else _dopri_step
        for target in knots[1:]:
            while direction * (target - t) > 0:
                if self.num_accepted + self.num_rejected >= self.max_num_steps:
                    raise RuntimeError(
                        f"dopri5 took more than max_num_steps={self.max_num_steps} steps; "
                        f"loosen atol/rtol (got atol={atol}, rtol={rtol})"
                    )
                last = direction * (t + h - target) >= -1e-12 * max(1.0, abs(target))
                h_try = target - t if last else h
                y_new, err, k7 = step(f, move, tt(t), tt(h_try), h_try, y, k1)
                scale = tuple(
                    atol + rtol * torch.maximum(a.abs(), b.abs())
                    for a, b in zip(y, y_new, strict=True)
                )
                e = _rms_norm(err, scale)
                if not math.isfinite(e):
                    raise FloatingPointError(
                        f"dopri5: non-finite error estimate at t={t:.6g}; the model output is "
                        "not finite"
                    )
                if e <= 1.0:
                    self.num_accepted += 1
                    t = target if last else t + h_try
                    y, k1 = y_new, k7
                else:
                    self.num_rejected += 1
                factor = 10.0 if e == 0 else min(10.0, max(0.2, 0.9 * e ** (-1 / 5)))
                h = h_try * factor
            out.append(y)
        return out

    @staticmethod
    def _initial_step(f, t0, direction, y0, f0, atol, rtol, tt, move) -> float:
        scale = tuple(atol + rtol * yi.abs() for yi in y0)
        d0 = _rms_norm(y0, scale)
        d1 = _rms_norm(f0, scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        y1 = move(y0, [(direction * h0, f0)])
        f1 = f(tt(t0 + direction * h0), y1)
        d2 = _rms_norm(tuple(a - b for a, b in zip(f1, f0, strict=True)), scale) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1 / 5)
        return min(100 * h0, h1)


def _time_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _dopri_step(f, move: Move, t: Tensor, h_t: Tensor, h: float, y: State, k1: State):
    """One Dormand–Prince step from ``(t, y)`` of size ``h``; returns ``(y_new, err, k7)``."""
    ks = [k1]
    yi = y
    for i in range(1, 7):
        yi = move(y, [(h * a, k) for a, k in zip(_A[i], ks, strict=False)])
        ks.append(f(t + _C[i] * h_t, yi))
    err = tuple(ki * (h * _E[0]) for ki in k1)
    err = lincomb(err, [(h * e, k) for e, k in zip(_E[1:], ks[1:], strict=True)])
    return yi, err, ks[6]


def _checkpointed(step):
    def run(f, move, t, h_t, h, y, k1):
        with set_checkpoint_early_stop(False):  # see fm_core.solver.integrate.checkpointed_step
            return checkpoint(step, f, move, t, h_t, h, y, k1, use_reentrant=False)

    return run
