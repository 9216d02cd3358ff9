"""Sample a model trained with one scheduler under another, without retraining."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from fm_core.path.scheduler.scheduler import Scheduler
from fm_core.utils.model_wrapper import ModelWrapper
from fm_core.utils.tensor import unsqueeze_to_match

__all__ = ["ScheduleTransformedModel"]


class ScheduleTransformedModel(ModelWrapper):
    r"""The velocity of a model trained under ``original_scheduler``, re-expressed for ``new_scheduler``.

    Two affine paths with the same source and target differ only by a time change and a scale:
    if $\alpha'_t/\sigma'_t = \alpha_r/\sigma_r$ then $x'_t = s_t\, x_r$ with
    $s_t = (\alpha'_t + \sigma'_t)/(\alpha_r + \sigma_r)$ (this ratio form has no 0/0 at either end).
    The time change is $r(t) = \mathrm{snr}^{-1}(\mathrm{snr}'(t))$ and

    $$u'_t(x) = \frac{\dot s_t}{s_t}\,x + s_t\,\dot r_t\,u_r(x / s_t),$$

    where $\dot r_t$ is obtained from $\rho = \alpha/(\alpha + \sigma)$, which is finite where the
    SNR is not: $\dot r_t = \dot\rho'(t) / \dot\rho(r)$.

    Args:
        velocity_model: the trained model, called as ``velocity_model(x=x, t=r, **extras)``.
        original_scheduler: the scheduler it was trained with.
        new_scheduler: the scheduler to sample with.

    Example:
        >>> trained = lambda x, t: -x  # a velocity trained on the CondOT path
        >>> model = ScheduleTransformedModel(trained, CondOTScheduler(), CosineScheduler())
        >>> ODESolver(model).sample(x_init=torch.randn(4, 2), step_size=0.05).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        velocity_model: ModelWrapper,
        original_scheduler: Scheduler,
        new_scheduler: Scheduler,
    ):
        for name, s in (
            ("original_scheduler", original_scheduler),
            ("new_scheduler", new_scheduler),
        ):
            if not isinstance(s, Scheduler):
                raise TypeError(f"{name} must be a fm_core Scheduler, got {type(s).__name__}")
        super().__init__(model=velocity_model)
        self.original_scheduler = original_scheduler
        self.new_scheduler = new_scheduler

    def forward(self, x: Tensor, t: Tensor, **extras: Any) -> Tensor:
        """Velocity under the new scheduler at ``x`` (``[B, ...]``) and ``t`` (0-dim or ``[B]``)."""
        new = self.new_scheduler(t)
        r = self.original_scheduler.snr_inverse(new.alpha_t / new.sigma_t)
        old = self.original_scheduler(r)

        new_sum = new.alpha_t + new.sigma_t
        old_sum = old.alpha_t + old.sigma_t
        s = new_sum / old_sum
        d_rho_new = (new.d_alpha_t * new.sigma_t - new.alpha_t * new.d_sigma_t) / new_sum**2
        d_rho_old = (old.d_alpha_t * old.sigma_t - old.alpha_t * old.d_sigma_t) / old_sum**2
        dr = d_rho_new / d_rho_old
        ds = (
            (new.d_alpha_t + new.d_sigma_t) * old_sum
            - new_sum * (old.d_alpha_t + old.d_sigma_t) * dr
        ) / old_sum**2

        s_x, ds_x, dr_x = (unsqueeze_to_match(v, x) if v.ndim else v for v in (s, ds, dr))
        u = self.model(x=x / s_x, t=r, **extras)
        return (ds_x / s_x) * x + s_x * dr_x * u
