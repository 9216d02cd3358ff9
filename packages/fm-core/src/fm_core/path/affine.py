r"""Affine probability paths $x_t = \sigma_t x_0 + \alpha_t x_1$ and their parameterisation converters."""

from __future__ import annotations

from torch import Tensor

from fm_core.path.path import ProbPath
from fm_core.path.path_sample import PathSample
from fm_core.path.scheduler.convex import CondOTScheduler
from fm_core.path.scheduler.scheduler import Scheduler, SchedulerOutput
from fm_core.utils.checks import check_floating, check_same_device, check_same_shape
from fm_core.utils.tensor import unsqueeze_to_match

__all__ = ["AffineProbPath", "CondOTProbPath"]


def _time_like(t: Tensor, x: Tensor, name: str = "t") -> Tensor:
    """``t`` as 0-dim, ``[B]`` or already of ``x.ndim`` dims -> broadcastable against ``x``."""
    check_floating(t, name)
    if t.ndim == 0:
        return t
    if t.ndim == 1 and x.ndim >= 1 and t.shape[0] == x.shape[0]:
        return unsqueeze_to_match(t, x)
    if t.ndim == x.ndim and all(a in (1, b) for a, b in zip(t.shape, x.shape)):
        return t
    raise ValueError(
        f"{name} must be a scalar, have shape [B] = [{x.shape[0] if x.ndim else '?'}], or "
        f"broadcast against x of shape {tuple(x.shape)}; got {tuple(t.shape)}"
    )


class AffineProbPath(ProbPath):
    r"""The affine conditional path $x_t = \sigma_t x_0 + \alpha_t x_1$.

    Its conditional velocity is $\dot x_t = \dot\sigma_t x_0 + \dot\alpha_t x_1$. A model may
    predict the velocity, the target $x_1$ or the source/noise $x_0$ (``epsilon``); the six
    converters move between these, given $x_t$ and $t$. They accept ``t`` of shape ``[B]`` for
    ``x`` of any shape ``[B, ...]`` (the reference requires ``t`` broadcast by hand), a 0-dim ``t``,
    or ``t`` already broadcastable.

    Args:
        scheduler: any ``Scheduler``.

    Example:
        >>> path = AffineProbPath(CondOTScheduler())
        >>> s = path.sample(x_0=torch.randn(8, 2), x_1=torch.randn(8, 2), t=torch.rand(8))
        >>> s.x_t.shape, s.dx_t.shape
        (torch.Size([8, 2]), torch.Size([8, 2]))
    """

    def __init__(self, scheduler: Scheduler):
        if not isinstance(scheduler, Scheduler):
            raise TypeError(
                f"scheduler must be a fm_core Scheduler (e.g. CondOTScheduler()), got "
                f"{type(scheduler).__name__}"
            )
        self.scheduler = scheduler

    def _coefficients(self, t: Tensor, x: Tensor) -> SchedulerOutput:
        return self.scheduler(_time_like(t, x))

    def sample(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> PathSample:
        r"""Sample $x_t$ and $\dot x_t$.

        Args:
            x_0: source samples, floating, shape ``[B, ...]``.
            x_1: target samples, shape of ``x_0``.
            t: times in $[0, 1]$, shape ``[B]``.

        Returns:
            ``PathSample(x_1, x_0, t, x_t, dx_t)``; ``x_t`` and ``dx_t`` in ``x_0``'s dtype
            (whatever ``t``'s dtype is).
        """
        self.assert_sample_shape(x_0=x_0, x_1=x_1, t=t)
        check_floating(x_0, "x_0")
        check_floating(x_1, "x_1")
        if x_1.dtype != x_0.dtype:
            raise TypeError(f"x_1 must have x_0's dtype {x_0.dtype}, got {x_1.dtype}")
        c = self._coefficients(t, x_0)
        # Outputs take the data's dtype (as GeodesicProbPath's): float64 t does not promote float32
        # data, and bf16 data stays bf16 (with float32 t: computed in float32, rounded once).
        x_t = (c.sigma_t * x_0 + c.alpha_t * x_1).to(x_0.dtype)
        dx_t = (c.d_sigma_t * x_0 + c.d_alpha_t * x_1).to(x_0.dtype)
        return PathSample(x_1=x_1, x_0=x_0, t=t, x_t=x_t, dx_t=dx_t)

    def _pair(self, name: str, value: Tensor, x_t: Tensor, t: Tensor) -> None:
        check_floating(value, name)
        check_floating(x_t, "x_t")
        check_same_shape([(name, value), ("x_t", x_t)])
        check_same_device([("x_t", x_t), (name, value), ("t", t)])

    def target_to_velocity(self, x_1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""$u = \frac{\dot\sigma_t}{\sigma_t} x_t + \big(\dot\alpha_t - \frac{\alpha_t\dot\sigma_t}{\sigma_t}\big) x_1$ (singular where $\sigma_t = 0$)."""
        self._pair("x_1", x_1, x_t, t)
        c = self._coefficients(t, x_t)
        a = c.d_sigma_t / c.sigma_t
        return a * x_t + (c.d_alpha_t - c.alpha_t * a) * x_1

    def epsilon_to_velocity(self, epsilon: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""$u = \frac{\dot\alpha_t}{\alpha_t} x_t + \big(\dot\sigma_t - \frac{\sigma_t\dot\alpha_t}{\alpha_t}\big)\epsilon$ (singular where $\alpha_t = 0$)."""
        self._pair("epsilon", epsilon, x_t, t)
        c = self._coefficients(t, x_t)
        a = c.d_alpha_t / c.alpha_t
        return a * x_t + (c.d_sigma_t - c.sigma_t * a) * epsilon

    def velocity_to_target(self, velocity: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""$x_1 = (\sigma_t u - \dot\sigma_t x_t) / (\dot\alpha_t\sigma_t - \alpha_t\dot\sigma_t)$."""
        self._pair("velocity", velocity, x_t, t)
        c = self._coefficients(t, x_t)
        return (c.sigma_t * velocity - c.d_sigma_t * x_t) / (
            c.d_alpha_t * c.sigma_t - c.alpha_t * c.d_sigma_t
        )

    def epsilon_to_target(self, epsilon: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""$x_1 = (x_t - \sigma_t\epsilon)/\alpha_t$ (singular where $\alpha_t = 0$)."""
        self._pair("epsilon", epsilon, x_t, t)
        c = self._coefficients(t, x_t)
        return (x_t - c.sigma_t * epsilon) / c.alpha_t

    def velocity_to_epsilon(self, velocity: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""$\epsilon = (\alpha_t u - \dot\alpha_t x_t) / (\alpha_t\dot\sigma_t - \dot\alpha_t\sigma_t)$."""
        self._pair("velocity", velocity, x_t, t)
        c = self._coefficients(t, x_t)
        return (c.alpha_t * velocity - c.d_alpha_t * x_t) / (
            c.alpha_t * c.d_sigma_t - c.d_alpha_t * c.sigma_t
        )

    def target_to_epsilon(self, x_1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        r"""$\epsilon = (x_t - \alpha_t x_1)/\sigma_t$ (singular where $\sigma_t = 0$)."""
        self._pair("x_1", x_1, x_t, t)
        c = self._coefficients(t, x_t)
        return (x_t - c.alpha_t * x_1) / c.sigma_t


class CondOTProbPath(AffineProbPath):
    r"""The affine path with the ``CondOTScheduler``: $x_t = (1 - t) x_0 + t x_1$, $\dot x_t = x_1 - x_0$.

    Example:
        >>> s = CondOTProbPath().sample(torch.zeros(4, 2), torch.ones(4, 2), torch.full((4,), 0.5))
        >>> s.x_t[0], s.dx_t[0]
        (tensor([0.5000, 0.5000]), tensor([1., 1.]))
    """

    def __init__(self) -> None:
        super().__init__(scheduler=CondOTScheduler())
