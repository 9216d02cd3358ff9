r"""Flow-map (average-velocity) losses for few-step generation: MeanFlow and improved MeanFlow.

A flow-map model $u_\theta(x, t, r)$ predicts the **average velocity** of the flow between the
time $t$ of its input $x = x_t$ and a later time $r$:

$$u(x_t, t, r) = \frac{1}{r - t}\int_t^r v(x_\tau, \tau)\, d\tau, \qquad
x_r = x_t + (r - t)\, u(x_t, t, r),$$

so one evaluation jumps from $t$ to $r$, and $r = t$ is the instantaneous velocity $v$ (a plain
flow-matching model is the special case). Differentiating $(r - t)\,u = x_r - x_t$ along the
flow in $t$ gives the **MeanFlow identity** (Geng et al., 2025)

$$u(x_t, t, r) = v(x_t, t) - (t - r)\,\frac{d}{dt} u(x_t, t, r), \qquad
\frac{d}{dt} u = v \cdot \partial_x u + \partial_t u,$$

whose right-hand side is computed with one forward-mode ``torch.func.jvp`` of the network with
tangents $(v, 1, 0)$ for $(x, t, r)$, which also returns $u$ itself (one pass).

**Sign convention.** The MeanFlow papers put data at time 0 and noise at 1 and write
$z_r = z_t - (t - r)\, u(z_t, r, t)$ with $r \le t$. fm-core's time runs the other way (noise at
0, data at 1). Substituting $t \to 1 - t$, $r \to 1 - r$ (which flips the sign of every velocity)
gives exactly the formulas above: the identity and the jump $x_r = x_t - (t - r) u$ keep their
form, and the papers' $r \le t$ becomes $t \le r$ (jumps go towards the data). So a pair with
$r < t$ is an error here, as $r > t$ is in the papers. The only conversion is of published time
samplers, in ``TimePairSampler.from_meanflow``.

Models are called ``model(x=x, t=t, r=r, **model_extras)`` with ``t`` and ``r`` of shape ``[B]``.
The loss calls the model itself (the JVP needs the function, not an output).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from fm_core.path.affine import AffineProbPath, CondOTProbPath
from fm_core.utils.checks import (
    check_batch_size,
    check_floating,
    check_same_device,
    check_same_shape,
    check_time,
    check_time_range,
    value_checks_enabled,
)

__all__ = ["FLOW_MAP_VARIANTS", "MeanFlowLoss", "check_flow_map_model", "check_time_pair"]

#: ``"meanflow"``: regress $u$ on the identity's target (MeanFlow, Geng et al., 2025).
#: ``"imf"``: regress the instantaneous velocity $u + (t - r)\,\mathrm{sg}(du/dt)$ on $v$, with the
#: network's own $u(x_t, t, t)$ as the JVP tangent (improved MeanFlow, Geng et al., 2025b).
FLOW_MAP_VARIANTS = ("meanflow", "imf")
_REDUCTIONS = ("mean", "sum", "none")


def check_flow_map_model(model: object, name: str = "model") -> None:
    """Raise ``TypeError`` unless ``model`` is callable and takes an ``r`` keyword argument.

    A plain velocity model ``model(x, t)`` would be called with ``r=`` and fail deep inside the
    step; this check fails first, naming the argument. ``**kwargs`` counts as taking ``r``.
    """
    if not callable(model):
        raise TypeError(f"{name} must be callable, got {type(model).__name__}")
    fn = model.forward if isinstance(model, nn.Module) else model
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    if not any(p.name == "r" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise TypeError(
            f"{name} must take the jump's end time as a keyword argument r, "
            f"model(x=x, t=t, r=r, ...) (a flow-map model); {type(model).__name__} takes "
            f"({', '.join(p.name for p in params)})"
        )


def check_time_pair(t: Tensor, r: Tensor, batch_size: int) -> None:
    """``t`` and ``r`` are ``[B]`` floating times in $[0, 1]$ with $t \\le r$ (values: eager CPU).

    Raises:
        ValueError: a wrong shape, a time outside $[0, 1]$, or a pair with $r < t$.
    """
    check_time(t, batch_size, "t")
    check_time(r, batch_size, "r")
    check_time_range(t, "t")
    check_time_range(r, "r")
    if value_checks_enabled(t, r) and bool((r < t).any()):
        i = int((r < t).nonzero()[0, 0])
        raise ValueError(
            f"r must be >= t (fm-core's time runs from noise at 0 to data at 1 and a flow map "
            f"jumps towards the data; the MeanFlow papers' r <= t is our t <= r): sample {i} "
            f"has t={float(t[i]):.4g}, r={float(r[i]):.4g}"
        )


def _number(value: object, name: str, low: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return float(value)


def _bcast(a: Tensor, like: Tensor) -> Tensor:
    return a.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


class MeanFlowLoss(nn.Module):
    r"""Flow-map loss: MeanFlow's identity target, or the improved (iMF) velocity regression.

    For a path sample $x_t = \sigma_t x_0 + \alpha_t x_1$ with conditional velocity
    $v = \dot\sigma_t x_0 + \dot\alpha_t x_1$ and a pair $t \le r$:

    - ``"meanflow"``: $\Delta = u_\theta(x_t, t, r) - \mathrm{sg}\big(\tilde v - (t - r)
      (\tilde v \cdot \partial_x u_\theta + \partial_t u_\theta)\big)$, one JVP with tangents
      $(\tilde v, 1, 0)$;
    - ``"imf"``: $\Delta = u_\theta(x_t, t, r) + (t - r)\,\mathrm{sg}(\tfrac{d}{dt}u_\theta)
      - \tilde v$, with the JVP tangent $\mathrm{sg}(u_\theta(x_t, t, t))$ (one extra forward
      without a graph): the target no longer depends on the network.

    $\tilde v = v$ without guidance. With classifier-free guidance folded into training
    (``guidance_scale`` $w \ne 0$), samples whose label is not the null label get
    $\tilde v = (1 + w)\,v - w\,\mathrm{sg}(u_\theta(x_t, t, t \mid \varnothing))$, the guided
    field of ``CFGScaledModel`` (MeanFlow's $\omega = 1 + w$); a guided 1-step sample then costs
    one evaluation. ``guidance_key`` also passes $w$ to the model (iMF's guidance as a
    condition), so that $w$ may differ per sample.

    Per sample, $\delta_i = \operatorname{mean}(\Delta_i^2)$ and, with **adaptive weighting**
    (MeanFlow's $w = 1/(\lVert\Delta\rVert^2 + c)^p$, as published: $p = 1$, $c = 10^{-3}$; CIFAR-10
    used $p = 0.75$), $\ell_i = \delta_i / \mathrm{sg}(\delta_i + c)^p$; ``adaptive_power=0``
    is the plain squared error.

    The loss is a flow-matching loss at $r = t$ (the JVP term vanishes), so the fraction of
    equal pairs (``TimePairSampler``'s ``equal_fraction``) mixes the two. Under a Triton kernel
    nothing changes: the JVP runs through the model's own torch operations.

    Args:
        path: an ``AffineProbPath`` (default ``CondOTProbPath()``).
        variant: ``"meanflow"`` (default) or ``"imf"``.
        adaptive_power: $p \ge 0$ (default 1).
        adaptive_eps: $c > 0$ (default ``1e-3``).
        guidance_scale: $w$ folded into training (default 0: none); a float or, with
            ``guidance_key``, a ``[B]`` tensor per call (``guidance_scale=`` in ``forward``).
        label_key: the model extra holding the labels (default ``"label"``).
        null_label: the label of the unconditional model (required when $w \ne 0$).
        guidance_key: the model extra that receives $w$ as a ``[B]`` tensor, or ``None``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``[B]``).

    Example:
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lin = torch.nn.Linear(4, 2)
        ...     def forward(self, x, t, r):
        ...         return self.lin(torch.cat([x, t[:, None], (r - t)[:, None]], -1))
        >>> x_0, x_1 = torch.randn(8, 2), torch.randn(8, 2)
        >>> t, r = TimePairSampler()(8)
        >>> loss = MeanFlowLoss()(Net(), x_0, x_1, t, r)
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        path: AffineProbPath | None = None,
        *,
        variant: str = "meanflow",
        adaptive_power: float = 1.0,
        adaptive_eps: float = 1e-3,
        guidance_scale: float = 0.0,
        label_key: str = "label",
        null_label: int | None = None,
        guidance_key: str | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if path is None:
            path = CondOTProbPath()
        if not isinstance(path, AffineProbPath):
            raise TypeError(f"path must be an fm_core AffineProbPath, got {type(path).__name__}")
        if variant not in FLOW_MAP_VARIANTS:
            raise ValueError(f"variant must be one of {FLOW_MAP_VARIANTS}, got {variant!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.path = path
        self.variant = variant
        self.adaptive_power = _number(adaptive_power, "adaptive_power", 0.0)
        self.adaptive_eps = _number(adaptive_eps, "adaptive_eps", 0.0)
        if self.adaptive_power > 0 and not self.adaptive_eps > 0:
            raise ValueError("adaptive_eps must be > 0 when adaptive_power > 0")
        self.guidance_scale = _number(guidance_scale, "guidance_scale", -math.inf)
        if null_label is not None and (
            isinstance(null_label, bool) or not isinstance(null_label, int)
        ):
            raise TypeError(f"null_label must be an int or None, got {type(null_label).__name__}")
        self.label_key = label_key
        self.null_label = null_label
        self.guidance_key = guidance_key
        self.reduction = reduction

    def _check(self, model, x_0, x_1, t, r, scale, extras) -> int:
        if not torch.compiler.is_compiling():
            check_flow_map_model(model)
        for name, x in (("x_0", x_0), ("x_1", x_1)):
            check_floating(x, name)
        batch = check_batch_size(x_0, "x_0")
        check_same_shape([("x_0", x_0), ("x_1", x_1)])
        check_time_pair(t, r, batch)
        check_same_device([("x_0", x_0), ("x_1", x_1), ("t", t), ("r", r)])
        guided = not (isinstance(scale, (int, float)) and scale == 0)
        if guided:
            if self.null_label is None:
                raise ValueError("guidance_scale != 0 needs null_label (the unconditional label)")
            if self.label_key not in extras:
                raise ValueError(
                    f"guidance_scale != 0 needs the labels as the model extra {self.label_key!r}"
                )
        if isinstance(scale, Tensor):
            if self.guidance_key is None:
                raise ValueError("a per-sample guidance_scale tensor needs guidance_key")
            if scale.shape != (batch,):
                raise ValueError(
                    f"guidance_scale must be a number or have shape [B] = [{batch}], "
                    f"got {tuple(scale.shape)}"
                )
        return batch

    def forward(
        self,
        model: Callable[..., Tensor],
        x_0: Tensor,
        x_1: Tensor,
        t: Tensor,
        r: Tensor,
        *,
        guidance_scale: float | Tensor | None = None,
        **model_extras,
    ) -> Tensor:
        r"""The loss of ``model`` on the pairs $(x_0, x_1)$ at times ``t`` $\le$ ``r``.

        Args:
            model: a flow-map model, called ``model(x=x, t=t, r=r, **model_extras)``.
            x_0: source (noise) samples, floating, shape ``[B, ...]``.
            x_1: data samples, shape of ``x_0``.
            t: times of the path samples, shape ``[B]``, in $[0, 1]$.
            r: end times of the jumps, shape ``[B]``, $t \le r \le 1$.
            guidance_scale: overrides the constructor's $w$ for this call (a number or ``[B]``).
            **model_extras: forwarded to the model (labels under ``label_key``, ...).

        Returns:
            A 0-dim tensor (``[B]`` for ``reduction="none"``), dtype at least float32.

        Raises:
            TypeError: a model without an ``r`` argument, non-floating inputs.
            ValueError: bad shapes, times outside $[0, 1]$ or $r < t$ (value checks: eager
                CPU), guidance without labels or a null label.
        """
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        self._check(model, x_0, x_1, t, r, scale, model_extras)
        sample = self.path.sample(x_0, x_1, t)
        x_t, v = sample.x_t, sample.dx_t
        extras = dict(model_extras)
        if self.guidance_key is not None:
            w = scale if isinstance(scale, Tensor) else torch.full_like(t, float(scale))
            extras[self.guidance_key] = w
        guided = not (isinstance(scale, (int, float)) and scale == 0)
        need_v_pred = self.variant == "imf"
        v_pred = None
        if guided or need_v_pred:
            v_pred, v_null = self._velocities(model, x_t, t, extras, guided)
            if guided:
                labels = extras[self.label_key]
                w = _bcast(scale if isinstance(scale, Tensor) else torch.full_like(t, scale), v)
                cond = _bcast(labels != self.null_label, v)
                v = torch.where(cond > 0, (1 + w) * v - w * v_null, v)

        def u_fn(x: Tensor, t_: Tensor, r_: Tensor) -> Tensor:
            return model(x=x, t=t_, r=r_, **extras)

        ones, zeros = torch.ones_like(t), torch.zeros_like(r)
        dt = _bcast(t - r, x_t)
        if self.variant == "meanflow":
            u, dudt = torch.func.jvp(u_fn, (x_t, t, r), (v.to(x_t.dtype), ones, zeros))
            err = u - (v - dt * dudt).detach()
        else:
            u, dudt = torch.func.jvp(u_fn, (x_t, t, r), (v_pred.to(x_t.dtype), ones, zeros))
            err = u + dt * dudt.detach() - v.detach()
        dtype = torch.promote_types(err.dtype, torch.float32)
        per = err.to(dtype).square().reshape(err.shape[0], -1).mean(dim=1)
        if self.adaptive_power > 0:
            per = per / (per.detach() + self.adaptive_eps) ** self.adaptive_power
        if self.reduction == "mean":
            return per.mean()
        if self.reduction == "sum":
            return per.sum()
        return per

    @torch.no_grad()
    def _velocities(self, model, x_t, t, extras, guided) -> tuple[Tensor | None, Tensor | None]:
        r"""$u_\theta(x_t, t, t)$ (the iMF tangent) and $u_\theta(x_t, t, t \mid \varnothing)$, in
        one batched call when both are needed; no graph (both are stop-gradient)."""
        if not guided:
            return model(x=x_t, t=t, r=t, **extras), None
        labels = extras[self.label_key]
        null = torch.full_like(labels, self.null_label)
        if self.variant != "imf":
            return None, model(x=x_t, t=t, r=t, **{**extras, self.label_key: null})
        b = x_t.shape[0]
        both = {
            k: torch.cat([val, val]) if isinstance(val, Tensor) and val.shape[:1] == (b,) else val
            for k, val in extras.items()
        }
        both[self.label_key] = torch.cat([labels, null])
        tt = torch.cat([t, t])
        out = model(x=torch.cat([x_t, x_t]), t=tt, r=tt, **both)
        return out[:b], out[b:]
