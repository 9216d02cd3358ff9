r"""The continuous flow-matching loss over any affine path: $\lVert f_\theta(x_t, t) - \text{target}\rVert^2$."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_core.path.affine import AffineProbPath
from fm_core.path.path_sample import PathSample
from fm_core.path.scheduler.scheduler import SchedulerOutput
from fm_core.utils._reduction import check_reduction, mean_over_coordinates, reduce_loss
from fm_core.utils.backend import check_backend, resolve_backend
from fm_core.utils.checks import (
    check_batch_size,
    check_choice,
    check_floating,
    check_same_device,
    check_same_shape,
    check_tensor,
    check_time,
    check_time_range,
)

__all__ = ["PREDICTIONS", "FlowMatchingLoss", "flow_matching_loss"]

PREDICTIONS = ("velocity", "x_1", "epsilon")


def _check_inputs(
    model_output: Tensor, x_0: Tensor, x_1: Tensor, t: Tensor, weights: Tensor | None
) -> None:
    for name, x in (("model_output", model_output), ("x_0", x_0), ("x_1", x_1)):
        check_floating(x, name)
    batch_size = check_batch_size(model_output, "model_output")
    check_same_shape([("model_output", model_output), ("x_0", x_0), ("x_1", x_1)])
    check_time(t, batch_size)
    # A value check (eager CPU by default, no host sync on a GPU): the schedulers are defined on
    # [0, 1] only, and VPScheduler at t = 1.5 gives finite but meaningless coefficients.
    check_time_range(t)
    check_same_device(
        [("model_output", model_output), ("x_0", x_0), ("x_1", x_1), ("t", t), ("weights", weights)]
    )
    if weights is not None:
        check_tensor(weights, "weights")
        check_floating(weights, "weights")
        if weights.shape != (batch_size,):
            raise ValueError(
                f"weights must have shape [B] = [{batch_size}] (one weight per sample), "
                f"got {tuple(weights.shape)}"
            )


def _torch_loss(
    model_output: Tensor,
    x_0: Tensor,
    x_1: Tensor,
    c: SchedulerOutput,
    prediction: str,
    weights: Tensor | None,
    reduction: str,
) -> Tensor:
    """fm-core's torch path: the same values as ``fm_kernels.reference.fm_loss`` (pinned by
    ``tests/test_kernel_dispatch_core.py``), kept here because fm-kernels is optional."""
    # Accumulate in at least float32: a bf16 mean over 3*64*64 entries loses ~3 digits.
    dtype = torch.promote_types(torch.promote_types(model_output.dtype, x_0.dtype), torch.float32)
    if prediction == "velocity":
        shape = (-1,) + (1,) * (x_0.ndim - 1)
        d_sigma, d_alpha = (v.to(dtype).reshape(shape) for v in (c.d_sigma_t, c.d_alpha_t))
        target = d_sigma * x_0.to(dtype) + d_alpha * x_1.to(dtype)
    else:
        target = (x_1 if prediction == "x_1" else x_0).to(dtype)
    per_sample = mean_over_coordinates((model_output.to(dtype) - target).square())
    if weights is not None:
        per_sample = per_sample * weights.to(dtype)
    return reduce_loss(per_sample, reduction)


def flow_matching_loss(
    path: AffineProbPath,
    model_output: Tensor,
    x_0: Tensor,
    x_1: Tensor,
    t: Tensor,
    *,
    prediction: str = "velocity",
    weights: Tensor | None = None,
    reduction: str = "mean",
    backend: str = "auto",
) -> Tensor:
    r"""The continuous flow-matching loss, functional form of ``FlowMatchingLoss``.

    With $x_t = \sigma_t x_0 + \alpha_t x_1$, the per-sample loss is
    $\ell_i = w_i \cdot \operatorname{mean}_{\text{non-batch dims}} (f_i - y_i)^2$, where the target
    $y$ depends on ``prediction``: ``"velocity"`` $\to \dot\sigma_t x_0 + \dot\alpha_t x_1$ (the
    path's ``dx_t``), ``"x_1"`` $\to x_1$, ``"epsilon"`` $\to x_0$.

    Args:
        path: the ``AffineProbPath`` that produced $x_t$ (its scheduler gives the coefficients).
        model_output: the network's prediction $f_\theta(x_t, t)$, floating, shape ``[B, ...]``.
        x_0: source samples, shape of ``model_output``.
        x_1: target samples, shape of ``model_output``.
        t: times in $[0, 1]$, floating, shape ``[B]`` (the range is a value check: eager mode
            on CPU tensors by default, see ``fm_core.utils.value_checks``; never a GPU sync).
        prediction: ``"velocity"``, ``"x_1"`` or ``"epsilon"``.
        weights: optional per-sample weights $w_i$, floating, shape ``[B]``.
        reduction: ``"none"`` returns $\ell$ of shape ``[B]``; ``"mean"`` (default) is its mean
            over the batch (so, unweighted, the mean over batch and coordinates; not divided by
            $\sum w_i$), ``"sum"`` its sum. The one rule of every fm-* loss.
        backend: ``"auto"`` (fm-kernels' fused kernel when it is installed and the tensors are on
            CUDA, else torch), ``"torch"``, or ``"triton"`` (requires fm-kernels).

    Returns:
        A 0-dim tensor, or shape ``[B]`` for ``reduction="none"``; dtype at least float32.

    Raises:
        TypeError: a non-tensor or non-floating input, or ``path`` not an ``AffineProbPath``.
        ValueError: a bad shape or option name, or (a value check) ``t`` outside $[0, 1]$.
        ImportError: ``backend="triton"`` without fm-kernels.
    """
    if not isinstance(path, AffineProbPath):
        raise TypeError(
            f"path must be an fm_core AffineProbPath (e.g. CondOTProbPath()), got {type(path).__name__}"
        )
    check_choice(prediction, "prediction", PREDICTIONS)
    check_reduction(reduction)
    check_backend(backend)
    _check_inputs(model_output, x_0, x_1, t, weights)
    c = path.scheduler(t)
    kernels = resolve_backend(backend, model_output, x_0, x_1)
    if kernels is not None:
        return kernels.fm_loss(
            model_output,
            x_0,
            x_1,
            c.alpha_t,
            c.sigma_t,
            c.d_alpha_t,
            c.d_sigma_t,
            prediction=prediction,
            weights=weights,
            reduction=reduction,
            backend="triton",
        )
    return _torch_loss(model_output, x_0, x_1, c, prediction, weights, reduction)


class FlowMatchingLoss(nn.Module):
    r"""Continuous flow-matching loss for a model that predicts the velocity, $x_1$ or $\epsilon$.

    For an affine path $x_t = \sigma_t x_0 + \alpha_t x_1$ and a model output $f$, the per-sample
    loss is $\ell_i = w_i \cdot \frac{1}{d}\sum_k (f_{ik} - y_{ik})^2$ with the target
    $y = \dot\sigma_t x_0 + \dot\alpha_t x_1$ (``"velocity"``), $y = x_1$ (``"x_1"``) or
    $y = x_0$ (``"epsilon"``; $x_0$ is the source noise). ``reduction`` then averages, sums or
    keeps the ``[B]`` values. See ``flow_matching_loss`` for the argument details.

    Args:
        path: an ``AffineProbPath`` (e.g. ``CondOTProbPath()``).
        prediction: what the model predicts: ``"velocity"`` (default), ``"x_1"`` or ``"epsilon"``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        backend: ``"auto"`` (default), ``"torch"`` or ``"triton"``.

    Example:
        >>> path = CondOTProbPath()
        >>> loss_fn = FlowMatchingLoss(path)
        >>> x_0, x_1, t = torch.randn(8, 2), torch.randn(8, 2), torch.rand(8)
        >>> x_t = path.sample(x_0, x_1, t).x_t
        >>> model = torch.nn.Linear(2, 2)  # any velocity network
        >>> loss = loss_fn(model(x_t), x_0, x_1, t)  # 0-dim tensor
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        path: AffineProbPath,
        prediction: str = "velocity",
        reduction: str = "mean",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(path, AffineProbPath):
            raise TypeError(
                f"path must be an fm_core AffineProbPath (e.g. CondOTProbPath()), got "
                f"{type(path).__name__}"
            )
        self.path = path
        self.prediction = check_choice(prediction, "prediction", PREDICTIONS)
        self.reduction = check_reduction(reduction)
        self.backend = check_backend(backend)

    def forward(
        self,
        model_output: Tensor,
        x_0: Tensor,
        x_1: Tensor,
        t: Tensor,
        weights: Tensor | None = None,
    ) -> Tensor:
        """Loss of ``model_output`` (``[B, ...]``) for endpoints ``x_0``, ``x_1`` at times ``t`` (``[B]``).

        ``weights`` is an optional ``[B]`` tensor. Returns a 0-dim tensor, or ``[B]`` when
        ``reduction="none"``.
        """
        return flow_matching_loss(
            self.path,
            model_output,
            x_0,
            x_1,
            t,
            prediction=self.prediction,
            weights=weights,
            reduction=self.reduction,
            backend=self.backend,
        )

    def from_sample(
        self, model_output: Tensor, sample: PathSample, weights: Tensor | None = None
    ) -> Tensor:
        """Same as ``forward``, taking ``x_0``, ``x_1`` and ``t`` from a ``PathSample``."""
        if not isinstance(sample, PathSample):
            raise TypeError(f"sample must be a PathSample, got {type(sample).__name__}")
        return self(model_output, sample.x_0, sample.x_1, sample.t, weights)

    def extra_repr(self) -> str:
        return (
            f"prediction={self.prediction!r}, reduction={self.reduction!r}, "
            f"backend={self.backend!r}"
        )
