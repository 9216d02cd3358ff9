r"""Metric-induced discrete paths $p_t(x \mid x_1) \propto \exp(-\beta_t\, d(x, x_1))$ (Shaul et al., ICLR 2025).

Per position, the path moves from the uniform distribution ($\beta_0 = 0$) to $\delta_{x_1}$
($\beta_1 = \infty$), passing through tokens close to $x_1$ under the distance $d$ first. The
kinetic-optimal rate from $z$ to $x \ne z$ that generates it is

$$u_t(x, z \mid x_1) = p_t(x \mid x_1)\,\dot\beta_t\,\big[d(z, x_1) - d(x, x_1)\big]_+ ,$$

it only ever moves closer to $x_1$. With the discrete metric $d(x, y) = 1 - \delta_{xy}$ the path is
the mixture path with a uniform source and $\kappa_t = 1 - V e^{-\beta_t} / (1 + (V-1) e^{-\beta_t})$,
and the rate is the mixture path's $\dot\kappa_t/(1-\kappa_t)$ (tested).

A posterior model $p_{1|t}(y \mid x_t)$ gives the marginal rate
$u_t(x, z) = \dot\beta_t \sum_y p_{1|t}(y \mid z)\, p_t(x \mid y)\,[d(z, y) - d(x, y)]_+$,
which costs $O(V^2)$ per position (``posterior_to_velocity``); the Euler sampler avoids it by
drawing $y$ first and taking the conditional rate ($O(V)$ per position).

**End points.** $\beta_0 = 0$ and $\beta_1 = \infty$ are exact: ``sample`` returns ``x_0`` at
$t = 0$ (draw it from the uniform source) and ``x_1`` at $t = 1$; probabilities are computed with
$d(x_1, x_1) = 0$ kept out of the product $\beta_t d$, so $t = 1$ gives an exact one-hot. Rates
diverge at $t = 1$: ``conditional_velocity``, ``posterior_to_velocity`` and the loss evaluate
$\beta$ and $\dot\beta$ at $\min(t, 1 - \epsilon)$ (``eps``, default ``1e-4``), as the mixture path
floors $1 - \kappa_t$; the sampler's last step lands on $x_1$ exactly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from fm_core.path.path import ProbPath
from fm_core.utils.checks import check_floating, check_same_device
from fm_discrete._checks import check_tokens
from fm_discrete.path.path_sample import DiscretePathSample

__all__ = ["BetaSchedule", "MetricDiscreteProbPath", "PolynomialBetaSchedule"]

#: Rates are evaluated at $\min(t, 1 - \epsilon)$ (they are infinite at $t = 1$).
DEFAULT_RATE_EPS = 1e-4
#: Entries of the ``[n, V, V]`` block ``posterior_to_velocity`` builds at once (32 MiB in float64).
_BLOCK_ELEMENTS = 1 << 22


class BetaSchedule(ABC):
    r"""$\beta_t$, increasing from $\beta_0 = 0$ to $\beta_1 = \infty$, and its derivative."""

    @abstractmethod
    def __call__(self, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""$(\beta_t, \dot\beta_t)$ for times ``t`` (any shape); both $+\infty$ at $t = 1$."""


class PolynomialBetaSchedule(BetaSchedule):
    r"""$\beta_t = c\,\big(t / (1 - t)\big)^a$, the schedule of Shaul et al. (2025).

    $\dot\beta_t = c\,a\,t^{a-1} / (1-t)^{a+1}$, finite on $[0, 1)$ for $a \ge 1$.

    Args:
        scale: $c > 0$ (default 1).
        power: $a \ge 1$ (default 1).

    Example:
        >>> beta, d_beta = PolynomialBetaSchedule(2.0)(torch.tensor([0.0, 0.5, 1.0]))
        >>> beta
        tensor([0., 2., inf])
    """

    def __init__(self, scale: float = 1.0, power: float = 1.0) -> None:
        for name, value, low in (("scale", scale, 0.0), ("power", power, 1.0)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (
                not ok
                or not math.isfinite(value)
                or value < low
                or (name == "scale" and value == 0)
            ):
                raise ValueError(
                    f"{name} must be a finite number >= {low:g} (scale > 0), got {value!r}"
                )
        self.scale, self.power = float(scale), float(power)

    def __call__(self, t: Tensor) -> tuple[Tensor, Tensor]:
        check_floating(t, "t")
        one_minus = 1.0 - t
        beta = self.scale * (t / one_minus).pow(self.power)  # t = 1: t / 0 = inf
        d_beta = self.scale * self.power * t.pow(self.power - 1.0) / one_minus.pow(self.power + 1.0)
        return beta, d_beta

    def __repr__(self) -> str:
        return f"PolynomialBetaSchedule(scale={self.scale:g}, power={self.power:g})"


def _check_distance(distance: object) -> Tensor:
    d = check_floating(distance, "distance")
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 1:
        raise ValueError(f"distance must be a square matrix [V, V], got {tuple(d.shape)}")
    if not bool(torch.isfinite(d).all()) or float(d.min()) < 0:
        raise ValueError("distance must hold finite, non-negative values")
    if not bool((d.diagonal() == 0).all()):
        raise ValueError("distance must be zero on the diagonal (d(x, x) = 0)")
    off = d + torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
    if not bool((off > 0).all()):
        raise ValueError(
            "distance must be positive off the diagonal (d(x, y) > 0 for x != y), or beta_1 = inf "
            "would not end at x_1"
        )
    return d


class MetricDiscreteProbPath(ProbPath):
    r"""The metric-induced path $p_t(x^i \mid x_1) = \mathrm{softmax}_x\big(-\beta_t\, d(x, x_1^i)\big)$, per position.

    The source is uniform over the $V$ tokens ($\beta_0 = 0$); ``x_0`` is returned at $t = 0$ and
    otherwise ignored (the path depends on $x_1$ only).

    Args:
        distance: $d(x, y)$ as a ``[V, V]`` matrix: finite, $\ge 0$, zero exactly on the diagonal
            (need not be symmetric).
        schedule: a ``BetaSchedule`` (default ``PolynomialBetaSchedule(1.0)``).
        eps: rates are evaluated at $\min(t, 1-\epsilon)$ (default ``1e-4``).

    Example:
        >>> path = MetricDiscreteProbPath.from_embeddings(torch.arange(8.0).unsqueeze(-1))
        >>> x_1 = torch.randint(0, 8, (4, 5))
        >>> path.sample(torch.randint(0, 8, (4, 5)), x_1, torch.rand(4)).x_t.shape
        torch.Size([4, 5])
    """

    def __init__(
        self,
        distance: Tensor,
        schedule: BetaSchedule | None = None,
        *,
        eps: float = DEFAULT_RATE_EPS,
    ) -> None:
        d = _check_distance(distance)
        if schedule is None:
            schedule = PolynomialBetaSchedule()
        if not isinstance(schedule, BetaSchedule):
            raise TypeError(f"schedule must be a BetaSchedule, got {type(schedule).__name__}")
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {eps!r}")
        self.distance = d
        self.schedule = schedule
        self.eps = float(eps)

    @classmethod
    def from_embeddings(
        cls,
        embeddings: Tensor,
        schedule: BetaSchedule | None = None,
        *,
        metric: str = "euclidean",
        power: float = 1.0,
        eps: float = DEFAULT_RATE_EPS,
    ) -> MetricDiscreteProbPath:
        r"""The path with $d(x, y) = \lVert e_x - e_y \rVert^{\text{power}}$ (or cosine distance).

        Args:
            embeddings: ``[V, D]`` token embeddings (distinct rows).
            schedule: as in the constructor.
            metric: ``"euclidean"`` or ``"cosine"`` ($1 - \cos(e_x, e_y)$).
            power: exponent applied to the distance (default 1).
            eps: as in the constructor.
        """
        e = check_floating(embeddings, "embeddings")
        if e.ndim != 2:
            raise ValueError(f"embeddings must have shape [V, D], got {tuple(e.shape)}")
        e = e.detach().double()
        if metric == "euclidean":
            d = torch.cdist(e, e)
        elif metric == "cosine":
            n = torch.nn.functional.normalize(e, dim=-1)
            d = (1.0 - n @ n.T).clamp_min(0.0)
        else:
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        d = d.pow(power)
        d.fill_diagonal_(0.0)
        return cls(d, schedule, eps=eps)

    @property
    def vocabulary_size(self) -> int:
        """$V$."""
        return self.distance.shape[0]

    def _distance_to(self, x_1: Tensor, dtype: torch.dtype) -> Tensor:
        """$d(\\cdot, x_1)$ per position: ``[*x_1.shape, V]``."""
        return self.distance.to(device=x_1.device, dtype=dtype).T[x_1]

    def _beta(self, t: Tensor, like: Tensor, guard: bool) -> tuple[Tensor, Tensor]:
        t = t.to(torch.float64)
        if guard:
            t = t.clamp(max=1.0 - self.eps)
        beta, d_beta = self.schedule(t)
        shape = (-1,) + (1,) * (like.ndim - 1) if t.ndim else ()
        return beta.reshape(shape), d_beta.reshape(shape)

    def _row_schedule(self, t: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        r"""$\beta_t$ and $\dot\beta_t$ per row, float64 ``[batch]``, guarded at $1 - \epsilon$."""
        t_b = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)
        return self.schedule(t_b.double().clamp(max=1.0 - self.eps))

    def _rate_tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The distance float64 ``d[x, y]`` and its transpose ``d_y[y, x] = d(x, y)``."""
        d = self.distance.to(device=device, dtype=torch.float64)
        return d, d.T

    def logits(self, x_1: Tensor, t: Tensor) -> Tensor:
        r"""$\log p_t(\cdot \mid x_1)$ up to a constant: $-\beta_t d(\cdot, x_1)$ (float64, ``-inf`` at $t=1$ off $x_1$).

        Args:
            x_1: targets, long ``[B, ...]``.
            t: ``[B]`` or 0-dim.

        Returns:
            ``[B, ..., V]`` float64.
        """
        d = self._distance_to(x_1, torch.float64)
        beta, _ = self._beta(t, d, guard=False)
        return _log_kernel(beta, d)

    def probabilities(self, x_1: Tensor, t: Tensor) -> Tensor:
        r"""$p_t(\cdot \mid x_1)$, ``[B, ..., V]`` float64 (uniform at $t=0$, one-hot at $t=1$)."""
        return torch.softmax(self.logits(x_1, t), dim=-1)

    def sample(
        self, x_0: Tensor, x_1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> DiscretePathSample:
        r"""Draw $x_t \sim p_t(\cdot \mid x_1)$ per position (float64 Gumbel-max); ``x_0`` at $t = 0$.

        Args:
            x_0: source tokens (uniform draws), long ``[B, ...]``.
            x_1: target tokens, long ``[B, ...]``, ids in ``[0, V)``.
            t: ``[B]`` in $[0, 1]$.
            generator: optional ``torch.Generator``.

        Returns:
            ``DiscretePathSample(x_1, x_0, t, x_t)``.
        """
        self.assert_sample_shape(x_0=x_0, x_1=x_1, t=t)
        vocab = self.vocabulary_size
        check_tokens(x_0, "x_0", vocab)
        check_tokens(x_1, "x_1", vocab)
        from fm_discrete.solver.step import gumbel_argmax  # the solver package imports paths

        logits = self.logits(x_1, t)
        drawn = gumbel_argmax(logits.reshape(-1, vocab), generator=generator).view_as(x_1)
        at_zero = (t == 0).reshape((-1,) + (1,) * (x_1.ndim - 1))
        x_t = torch.where(at_zero, x_0, drawn.to(x_1.dtype))
        return DiscretePathSample(x_1=x_1, x_0=x_0, t=t, x_t=x_t)

    def conditional_velocity(self, x_t: Tensor, x_1: Tensor, t: Tensor) -> Tensor:
        r"""The kinetic-optimal rates $u_t(x, x_t \mid x_1)$ to every $x$, ``[B, ..., V]`` float64.

        Off the diagonal $p_t(x \mid x_1)\,\dot\beta_t\,[d(x_t, x_1) - d(x, x_1)]_+ \ge 0$; the entry at
        $x_t$ makes each row sum to zero. $t$ is guarded at $1 - \epsilon$.
        """
        check_tokens(x_t, "x_t", self.vocabulary_size)
        check_tokens(x_1, "x_1", self.vocabulary_size)
        check_same_device([("x_t", x_t), ("x_1", x_1), ("t", t)])
        d = self._distance_to(x_1, torch.float64)
        beta, d_beta = self._beta(t, d, guard=True)
        p = torch.softmax(_log_kernel(beta, d), dim=-1)
        d_now = d.gather(-1, x_t.unsqueeze(-1))
        rates = p * d_beta * (d_now - d).clamp_min(0.0)
        return _with_diagonal(rates, x_t)

    def posterior_to_velocity(self, posterior_logits: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""Marginal rates $u_t(x, x_t) = \dot\beta_t \sum_y p_{1|t}(y)\,p_t(x \mid y)\,[d(x_t, y) - d(x, y)]_+$.

        Costs $O(V^2)$ per position, built in blocks of about $2^{22}$ entries.

        Args:
            posterior_logits: logits of $p_{1|t}(\cdot \mid x_t)$, ``[B, ..., V]``.
            x_t: ``[B, ...]``.
            t: ``[B]`` or 0-dim (guarded at $1 - \epsilon$).

        Returns:
            ``[B, ..., V]`` in the logits' dtype; rows sum to zero.
        """
        check_floating(posterior_logits, "posterior_logits")
        check_tokens(x_t, "x_t", self.vocabulary_size)
        check_same_device([("posterior_logits", posterior_logits), ("x_t", x_t), ("t", t)])
        if posterior_logits.shape != (*x_t.shape, self.vocabulary_size):
            raise ValueError(
                f"posterior_logits must have shape [*x_t.shape, V] = {(*x_t.shape, self.vocabulary_size)}, "
                f"got {tuple(posterior_logits.shape)}"
            )
        return self.posterior_probs_to_velocity(torch.softmax(posterior_logits, -1), x_t, t)

    def posterior_probs_to_velocity(self, posterior: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """``posterior_to_velocity`` from probabilities (or any non-negative weights) ``[B, ..., V]``."""
        vocab = self.vocabulary_size
        batch = x_t.shape[0] if x_t.ndim else 1
        flat_p = posterior.reshape(batch, -1, vocab)
        flat_x = x_t.reshape(batch, -1)
        beta, d_beta = self._row_schedule(t, batch)
        d, d_y = self._rate_tables(posterior.device)
        rows_per_block = _BLOCK_ELEMENTS // max(1, flat_x.shape[1] * vocab * vocab)
        if rows_per_block >= 2 and vocab**3 <= _BLOCK_ELEMENTS:
            # Small V (pixels): many rows per block, the gaps [d(z, y) - d(x, y)]_+ of every
            # (z, y, x) tabulated once, in the posterior's dtype (4x faster than the row loop).
            dt = posterior.dtype
            gaps = _gaps(d, d_y).to(dt)  # [z, y, x]
            out = []
            for r in range(0, batch, rows_per_block):
                rows = slice(r, r + rows_per_block)
                p_y = torch.softmax(_log_kernel(beta[rows, None, None], d_y), -1).to(
                    dt
                )  # [r, y, x]
                weight = p_y.unsqueeze(1) * gaps[flat_x[rows]]  # [r, n, y, x]
                scale = d_beta[rows, None, None].to(dt)
                out.append(torch.einsum("rny,rnyx->rnx", flat_p[rows], weight) * scale)
            return _with_diagonal(torch.cat(out).reshape(posterior.shape), x_t)
        out = []
        for b in range(batch):
            # p_t(x | y) for every target y: [V_y, V_x].
            p_y = torch.softmax(_log_kernel(beta[b], d_y), dim=-1)
            rows = []
            step = max(1, _BLOCK_ELEMENTS // (vocab * vocab))
            for s in range(0, flat_x.shape[1], step):
                z = flat_x[b, s : s + step]
                gap = _gaps(d[z], d_y)  # [n, y, x]
                weight = (p_y.unsqueeze(0) * gap).to(posterior.dtype)
                rows.append(torch.einsum("ny,nyx->nx", flat_p[b, s : s + step], weight))
            out.append(torch.cat(rows) * d_beta[b].to(posterior.dtype))
        rates = torch.stack(out).reshape(posterior.shape)
        return _with_diagonal(rates, x_t)

    def __repr__(self) -> str:
        return f"MetricDiscreteProbPath(V={self.vocabulary_size}, {self.schedule!r})"


def _log_kernel(beta: Tensor, d: Tensor) -> Tensor:
    r"""$-\beta d$, with 0 where $d = 0$ (the target itself), so $\beta = \infty$ gives 0, not NaN."""
    return torch.where(d == 0, torch.zeros((), dtype=d.dtype, device=d.device), -beta * d)


def _gaps(d_z: Tensor, d_y: Tensor) -> Tensor:
    """$[d(z, y) - d(x, y)]_+$ as ``[..., y, x]`` for the rows ``d_z = d[z]`` ``[..., y]``."""
    return (d_z.unsqueeze(-1) - d_y).clamp_min(0.0)


def _with_diagonal(rates: Tensor, x_t: Tensor) -> Tensor:
    """Set the entry at ``x_t`` to minus the sum of the others (out of place: autograd-safe)."""
    idx = x_t.unsqueeze(-1)
    off = rates.scatter(-1, idx, 0.0)
    return off.scatter(-1, idx, -off.sum(-1, keepdim=True))
