"""The extension namespace: the few fm-core internals that sibling packages build on.

fm-discrete, fm-riemann and the apps import these from here and nowhere else, so fm-core's
module layout can change behind them. They are not part of the reference-compatible user API
(``fm_core.__all__``): names here may change between minor versions, listed in the changelog;
``tests/test_public_api.py`` freezes this list as it freezes the public one.

- Input checks (ValueError / TypeError naming the argument, raised before any work):
  ``check_tensor``, ``check_floating``, ``check_choice``, ``check_batch_size``, ``check_same_shape``,
  ``check_same_device``, ``check_time``, ``check_time_range``, ``check_finite``,
  ``check_open_unit``, ``check_log_density``; and ``value_checks_enabled``, the rule that decides
  whether a value check (one that reads tensor values) runs.
- Kernel dispatch: ``BACKENDS``, ``check_backend``, ``resolve_backend`` (fm-kernels, imported
  lazily; ``fm_kernels.select_backend`` holds the rule).
- Loss reductions: ``REDUCTIONS``, ``check_reduction``, ``reduce_loss``, ``mean_over_coordinates``
  (one meaning of ``reduction`` for every loss; docs/fm-core/loss.md).
- Sampling: ``gumbel_argmax``, the one Gumbel-max sampler (chunked, float64 by default).

Example:
    >>> from fm_core.ext import check_reduction, reduce_loss
    >>> reduce_loss(torch.tensor([1.0, 3.0]), check_reduction("mean"))
    tensor(2.)
"""

from fm_core.utils._gumbel import gumbel_argmax
from fm_core.utils._reduction import (
    REDUCTIONS,
    check_reduction,
    mean_over_coordinates,
    reduce_loss,
)
from fm_core.utils.backend import BACKENDS, check_backend, resolve_backend
from fm_core.utils.checks import (
    check_batch_size,
    check_choice,
    check_finite,
    check_floating,
    check_log_density,
    check_open_unit,
    check_same_device,
    check_same_shape,
    check_tensor,
    check_time,
    check_time_range,
    value_checks_enabled,
)

__all__ = [
    "BACKENDS",
    "REDUCTIONS",
    "check_backend",
    "check_batch_size",
    "check_choice",
    "check_finite",
    "check_floating",
    "check_log_density",
    "check_open_unit",
    "check_reduction",
    "check_same_device",
    "check_same_shape",
    "check_tensor",
    "check_time",
    "check_time_range",
    "gumbel_argmax",
    "mean_over_coordinates",
    "reduce_loss",
    "resolve_backend",
    "value_checks_enabled",
]
