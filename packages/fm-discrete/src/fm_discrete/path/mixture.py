r"""The mixture path $p_t(x^i \mid x_0, x_1) = (1 - \kappa_t)\,\delta_{x_0^i} + \kappa_t\,\delta_{x_1^i}$."""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.path.path import ProbPath
from fm_core.path.scheduler.scheduler import ConvexScheduler
from fm_core.utils.checks import check_floating, check_same_device
from fm_core.utils.tensor import unsqueeze_to_match
from fm_discrete._checks import check_tokens
from fm_discrete.path.path_sample import DiscretePathSample

__all__ = ["DEFAULT_JUMP_EPS", "MixtureDiscreteProbPath", "posterior_to_velocity"]

#: Guard of the jump coefficient: $1 - \kappa_t$ is floored at this value. With $\kappa_t = t$ it
#: caps $\dot\kappa_t/(1-\kappa_t)$ at $10^4$, reached only for $t > 1 - 10^{-4}$.
DEFAULT_JUMP_EPS = 1e-4


class MixtureDiscreteProbPath(ProbPath):
    r"""The factorised mixture path on token sequences.

    Each position stays at its source token $x_0^i$ until a random time $\tau$ with
    $P(\tau \le t) = \kappa_t$, then jumps to its target token $x_1^i$:

    $$p_t(x^i \mid x_0, x_1) = (1-\kappa_t)\,\delta_{x_0^i}(x^i) + \kappa_t\,\delta_{x_1^i}(x^i).$$

    The conditional rate that generates it is
    $u_t(y, x \mid x_1) = \frac{\dot\kappa_t}{1-\kappa_t}\big(\delta_{x_1}(y) - \delta_x(y)\big)$.

    Args:
        scheduler: a ``fm_core`` ``ConvexScheduler`` giving $\kappa_t$ (``alpha_t``).

    Example:
        >>> path = MixtureDiscreteProbPath(CondOTScheduler())
        >>> x_1 = torch.randint(0, 10, (4, 8))
        >>> s = path.sample(x_0=torch.full_like(x_1, 10), x_1=x_1, t=torch.rand(4))
        >>> s.x_t.shape
        torch.Size([4, 8])
    """

    def __init__(self, scheduler: ConvexScheduler):
        if not isinstance(scheduler, ConvexScheduler):
            raise TypeError(
                "scheduler must be a fm_core ConvexScheduler (kappa_t = alpha_t, e.g. "
                f"CondOTScheduler() or PolynomialConvexScheduler(2)), got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler

    def sample(
        self, x_0: Tensor, x_1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> DiscretePathSample:
        r"""Draw $x_t$: each position is $x_1^i$ with probability $\kappa_t$, else $x_0^i$.

        Args:
            x_0: source tokens, integer, shape ``[B, ...]``.
            x_1: target tokens, shape of ``x_0``.
            t: times in $[0, 1]$, floating, shape ``[B]``.
            generator: optional ``torch.Generator`` for the uniform draws.

        Returns:
            ``DiscretePathSample(x_1, x_0, t, x_t)`` with ``x_t`` of the shape and dtype of ``x_0``.
        """
        self.assert_sample_shape(x_0=x_0, x_1=x_1, t=t)
        check_tokens(x_0, "x_0")
        check_tokens(x_1, "x_1")
        kappa = unsqueeze_to_match(self.scheduler(t).alpha_t, x_1)
        u = torch.rand(x_1.shape, device=x_1.device, dtype=kappa.dtype, generator=generator)
        # U in [0, 1): kappa = 0 keeps x_0 exactly, kappa = 1 gives x_1 exactly.
        x_t = torch.where(u < kappa, x_1, x_0)
        return DiscretePathSample(x_1=x_1, x_0=x_0, t=t, x_t=x_t)

    def jump_coefficient(self, t: Tensor, eps: float = DEFAULT_JUMP_EPS) -> Tensor:
        r"""$\dot\kappa_t / \max(1 - \kappa_t, \epsilon)$: the rate at which a position leaves its source.

        It diverges at $t = 1$ for every convex schedule; the floor $\epsilon$ keeps it finite.

        Args:
            t: times, floating, any shape.
            eps: the floor of $1 - \kappa_t$ (default ``1e-4``).

        Returns:
            Tensor of the shape of ``t``.
        """
        check_floating(t, "t")
        out = self.scheduler(t)
        return out.d_alpha_t / (1.0 - out.alpha_t).clamp_min(eps)

    def posterior_to_velocity(self, posterior_logits: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""Turn posterior logits into the probability velocity (rates).

        $u_t(y, x_t) = \frac{\dot\kappa_t}{1-\kappa_t}\big(p_{1|t}(y \mid x_t) - \delta_{x_t}(y)\big)$,
        with the jump coefficient guarded as in ``jump_coefficient``.

        Args:
            posterior_logits: logits of $p_{1|t}(\cdot \mid x_t)$, shape ``[B, ..., V]``.
            x_t: tokens, shape ``[B, ...]``.
            t: times, shape ``[B]`` or 0-dim.

        Returns:
            Rates of shape ``[B, ..., V]``; each row sums to zero.
        """
        check_floating(posterior_logits, "posterior_logits")
        check_same_device([("posterior_logits", posterior_logits), ("x_t", x_t), ("t", t)])
        check_tokens(x_t, "x_t", posterior_logits.shape[-1])
        if posterior_logits.shape[:-1] != x_t.shape:
            raise ValueError(
                f"posterior_logits must have shape [*x_t.shape, V] = [{', '.join(map(str, x_t.shape))}, V], "
                f"got {tuple(posterior_logits.shape)}"
            )
        posterior = torch.softmax(posterior_logits, dim=-1)
        coeff = self.jump_coefficient(t)
        if coeff.ndim:
            coeff = unsqueeze_to_match(coeff, posterior)
        coeff = coeff.to(posterior.dtype)
        # Out of place: softmax saves its output for backward, so an in-place update would make
        # every backward through the velocity raise.
        u = posterior * coeff
        return u.scatter_add(-1, x_t.unsqueeze(-1).long(), -coeff.expand(*x_t.shape, 1))

    def __repr__(self) -> str:
        return f"MixtureDiscreteProbPath({self.scheduler!r})"


def posterior_to_velocity(
    posterior_logits: Tensor,
    x_t: Tensor,
    t: Tensor,
    path: MixtureDiscreteProbPath | None = None,
) -> Tensor:
    r"""Function form of ``MixtureDiscreteProbPath.posterior_to_velocity``.

    Args:
        posterior_logits: ``[B, ..., V]``.
        x_t: ``[B, ...]``.
        t: ``[B]`` or 0-dim.
        path: the mixture path; ``None`` means $\kappa_t = t$ (``CondOTScheduler``).

    Returns:
        Rates ``[B, ..., V]``.

    Example:
        >>> u = posterior_to_velocity(torch.zeros(1, 2, 3), torch.tensor([[0, 1]]), torch.tensor([0.5]))
        >>> u.sum(-1).abs().max() < 1e-6  # rates out of a state balance the rate of staying
        tensor(True)
    """
    if path is None:
        from fm_core.path.scheduler.convex import CondOTScheduler

        path = MixtureDiscreteProbPath(CondOTScheduler())
    return path.posterior_to_velocity(posterior_logits, x_t, t)
