"""The two objectives of the app on fm-core / fm-discrete: a continuous flow on pixel values and a
discrete flow on pixel tokens. Each draws its randomness for the GLOBAL batch of a step from one
generator and keeps this process's slice, so a step's noise does not depend on the process count.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_core import (
    AffineProbPath,
    CFGScaledModel,
    CondOTScheduler,
    CosineScheduler,
    ExactOTCoupling,
    FlowMatchingLoss,
    LinearVPScheduler,
    LogitNormalTimeSampler,
    LogNormalSigmaTimeSampler,
    ODESolver,
    PolynomialConvexScheduler,
    UniformTimeSampler,
    VPScheduler,
    drop_labels,
)
from fm_core.solver._registry import get_method
from fm_image.config import TrainConfig

__all__ = [
    "METRIC_DISTANCES",
    "ContinuousFlow",
    "DiscreteFlow",
    "StepSlice",
    "intensity_distance",
    "make_flow",
]


class StepSlice:
    """This process's rows ``[lo, hi)`` of a global (micro-)batch of ``size`` samples."""

    def __init__(self, size: int, lo: int, hi: int) -> None:
        self.size, self.lo, self.hi = size, lo, hi


def make_scheduler(name: str):
    return {
        "condot": CondOTScheduler,
        "cosine": CosineScheduler,
        "vp": VPScheduler,
        "linear-vp": LinearVPScheduler,
        "poly2": lambda: PolynomialConvexScheduler(2),
        "poly3": lambda: PolynomialConvexScheduler(3),
    }[name]()


def make_time_sampler(name: str, scheduler):
    if name == "uniform":
        return UniformTimeSampler()
    if name == "logit-normal":
        return LogitNormalTimeSampler(0.0, 1.0)
    # The reference image example's "skewed timesteps": EDM's log-normal noise levels.
    return LogNormalSigmaTimeSampler(-1.2, 1.2, scheduler=scheduler)


def _drop(labels: Tensor, cfg: TrainConfig, null: int, s: StepSlice, g: torch.Generator) -> Tensor:
    # drop_labels draws one uniform per row: draw them for the global batch and keep our slice.
    full = torch.full((s.size,), null, dtype=labels.dtype, device=labels.device)
    full[s.lo : s.hi] = labels
    return drop_labels(full, cfg.label_dropout, null_label=null, generator=g)[s.lo : s.hi]


def _labels_for_model(labels: Tensor, num_classes: int) -> Tensor:
    """``-1`` (unconditional) -> the null class ``num_classes``."""
    return torch.where(labels < 0, torch.full_like(labels, num_classes), labels)


class ContinuousFlow:
    """Affine path from Gaussian noise to images in $[-1, 1]$, ``FlowMatchingLoss``, ``ODESolver``.

    Args:
        cfg: the run's configuration (scheduler, time sampler, label dropout, OT coupling).
        shape: ``(C, H, W)``.
        num_classes: classes the model is conditioned on (0: unconditional).
        levels: intensity levels of the data (samples are rounded to them).
    """

    vocab = None

    def __init__(
        self, cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int, levels: int = 256
    ) -> None:
        self.cfg = cfg
        self.levels = levels
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.path = AffineProbPath(make_scheduler(cfg.scheduler))
        self.loss_fn = FlowMatchingLoss(self.path)
        self.time_sampler = make_time_sampler(cfg.time_sampler, self.path.scheduler)
        self.coupling = ExactOTCoupling() if cfg.ot_coupling else None

    def loss(
        self, model: nn.Module, x_1: Tensor, labels: Tensor, s: StepSlice, g: torch.Generator
    ) -> Tensor:
        """Mean FM loss of ``model`` on images ``x_1`` ``[b, C, H, W]`` with labels ``[b]``."""
        dev = x_1.device
        x_0 = torch.randn((s.size, *self.shape), device=dev, generator=g)[s.lo : s.hi]
        t = self.time_sampler(s.size, device=dev, generator=g)[s.lo : s.hi]
        if self.coupling is not None:
            pair = (
                self.coupling(x_0, x_1, y_0=labels, y_1=labels)
                if self.num_classes
                else (self.coupling(x_0, x_1))
            )
            x_1 = pair.x_1
            labels = labels if pair.y_1 is None else pair.y_1
        if self.num_classes:
            labels = _drop(labels, self.cfg, self.num_classes, s, g)
        x_t = self.path.sample(x_0, x_1, t).x_t
        return self.loss_fn(model(x_t, t, labels if self.num_classes else None), x_0, x_1, t)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        labels: Tensor,
        *,
        nfe: int,
        method: str = "midpoint",
        cfg_scale: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, int]:
        """Integrate from noise with labels ``[K]`` (-1: unconditional).

        Returns uint8 images ``[K, C, H, W]`` and the number of model evaluations (one batched
        call per evaluation, also with guidance).
        """
        dev = labels.device
        x_0 = torch.randn((labels.shape[0], *self.shape), device=dev, generator=generator)
        extras = {}
        net: nn.Module = model
        if self.num_classes:
            extras["label"] = _labels_for_model(labels, self.num_classes)
            if cfg_scale != 0.0:
                net = CFGScaledModel(model, cfg_scale, null_label=self.num_classes)
        solver = ODESolver(net)
        m = get_method(method)
        if m.adaptive:
            x = solver.sample(x_0, step_size=None, method=method, atol=1e-4, rtol=1e-4, **extras)
        else:
            steps = max(1, nfe // (m.stages or 1))
            grid = torch.linspace(0.0, 1.0, steps + 1, device=dev)
            x = solver.sample(x_0, step_size=None, method=method, time_grid=grid, **extras)
        return self.to_uint8(x), solver.last_nfe

    def to_uint8(self, x: Tensor) -> Tensor:
        """Model space $[-1, 1]$ -> the data's own intensity levels -> uint8 0..255.

        Rounding to the ``levels`` values the data can take (17 for digits, 256 for 8-bit images)
        is the decoding of a continuous flow trained on quantised data.
        """
        from fm_image.data import levels_to_uint8

        top = self.levels - 1
        return levels_to_uint8(((x.float().clamp(-1, 1) + 1) * (top / 2)).round(), self.levels)


class _NoMaskLogits(nn.Module):
    """Forbid the mask token as a posterior outcome when sampling (fm-discrete's ``forbid_token``).

    The image network takes ``label`` positionally, so this adapter stays; the edit is shared.
    """

    def __init__(self, model: nn.Module, mask: int) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        from fm_discrete import forbid_token

        return forbid_token(self.model(x, t, label).float(), self.mask)


def intensity_distance(levels: int, kind: str = "abs") -> Tensor:
    r"""$d(x, z)$ between intensity levels, ``[levels, levels]`` float64, scaled so that its maximum is 1.

    ``"abs"``: $|x - z| / (L - 1)$; ``"square"``: $\big(|x - z| / (L - 1)\big)^2$. The scaling makes
    ``--metric-beta`` mean the same for any number of levels.

    Example:
        >>> intensity_distance(3, "square")
        tensor([[0.0000, 0.2500, 1.0000],
                [0.2500, 0.0000, 0.2500],
                [1.0000, 0.2500, 0.0000]], dtype=torch.float64)
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if kind not in METRIC_DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(METRIC_DISTANCES)}; got {kind!r}")
    v = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    d = (v[:, None] - v[None, :]).abs()
    return d if kind == "abs" else d.square()


#: Distances between intensity levels for ``--path metric``.
METRIC_DISTANCES = ("abs", "square")


def make_discrete_path(cfg: TrainConfig, levels: int):
    """The discrete path of ``cfg.path``: the mixture path or the metric path on pixel intensities."""
    if getattr(cfg, "path", "mixture") == "metric":
        from fm_discrete import MetricDiscreteProbPath, PolynomialBetaSchedule

        schedule = PolynomialBetaSchedule(scale=cfg.metric_beta, power=cfg.metric_power)
        return MetricDiscreteProbPath(intensity_distance(levels, cfg.metric_distance), schedule)
    from fm_discrete import MixtureDiscreteProbPath

    return MixtureDiscreteProbPath(make_scheduler(cfg.scheduler))


class DiscreteFlow:
    r"""Pixels as tokens over their intensity levels: a discrete path, generalized KL, CTMC Euler.

    ``cfg.path``: ``"mixture"`` (``MixtureDiscreteProbPath`` with ``cfg.scheduler``, mask or
    uniform ``source``) or ``"metric"`` (``MetricDiscreteProbPath`` with the distance
    ``cfg.metric_distance`` between intensity levels and $\beta_t = c\,(t/(1-t))^a$,
    $c$ = ``metric_beta``, $a$ = ``metric_power``; uniform source). Both train with the path's
    generalized KL (the ELBO's integrand; ``discrete_loss="gkl"``) or the posterior's
    cross-entropy (``"ce"``), and sample with ``MixtureDiscreteEulerSolver``.

    Args:
        cfg: the run's configuration (``source``: ``"mask"`` or ``"uniform"``; a convex scheduler).
        shape: ``(C, H, W)``.
        num_classes: classes (0: unconditional).
        levels: intensity levels (17 for digits, 256 for 8-bit images).
    """

    def __init__(
        self, cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int, levels: int
    ) -> None:
        from fm_discrete import (
            MetricPathGeneralizedKL,
            MixturePathCrossEntropy,
            MixturePathGeneralizedKL,
        )

        self.cfg = cfg
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.levels = levels
        self.metric = getattr(cfg, "path", "mixture") == "metric"
        self.mask = levels if cfg.source == "mask" and not self.metric else None
        self.vocab = levels + 1 if self.mask is not None else levels
        self.path = make_discrete_path(cfg, levels)
        if getattr(cfg, "discrete_loss", "gkl") == "ce":
            # Same minimiser (the posterior), every time weighted equally; on the mixture path
            # only the positions still away from x_1 count (the masked ones with a mask source).
            self.loss_fn = MixturePathCrossEntropy(only_changed=not self.metric)
        elif self.metric:
            self.loss_fn = MetricPathGeneralizedKL(self.path)
        else:
            self.loss_fn = MixturePathGeneralizedKL(self.path)
        scheduler = None if self.metric else self.path.scheduler
        self.time_sampler = make_time_sampler(cfg.time_sampler, scheduler)

    def _source(self, n: int, s: StepSlice | None, dev, g) -> Tensor:
        size = n if s is None else s.size
        if self.mask is not None:
            x = torch.full((size, *self.shape), self.mask, dtype=torch.long, device=dev)
        else:
            x = torch.randint(0, self.levels, (size, *self.shape), device=dev, generator=g)
        return x if s is None else x[s.lo : s.hi]

    def loss(
        self, model: nn.Module, x_1: Tensor, labels: Tensor, s: StepSlice, g: torch.Generator
    ) -> Tensor:
        """Mean generalized-KL loss on tokens ``x_1`` ``[b, C, H, W]`` with labels ``[b]``."""
        dev = x_1.device
        x_0 = self._source(0, s, dev, g)
        t = self.time_sampler(s.size, device=dev, generator=g)[s.lo : s.hi]
        if self.num_classes:
            labels = _drop(labels, self.cfg, self.num_classes, s, g)
        x_t = self.path.sample(x_0, x_1, t, generator=g).x_t
        logits = model(x_t, t, labels if self.num_classes else None)
        return self.loss_fn(logits.float(), x_1, x_t, t)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        labels: Tensor,
        *,
        nfe: int,
        method: str = "euler",
        cfg_scale: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, int]:
        """CTMC Euler sampling in ``nfe`` steps; returns uint8 images ``[K, C, H, W]`` and the NFE."""
        from fm_discrete import MixtureDiscreteEulerSolver, uniform_source_p
        from fm_image.data import levels_to_uint8

        dev = labels.device
        net = _NoMaskLogits(model, self.mask) if self.mask is not None else model
        solver = MixtureDiscreteEulerSolver(
            net,
            self.path,
            vocabulary_size=self.vocab,
            source_distribution_p=None if self.mask is not None else uniform_source_p(self.vocab),
            mask_token=self.mask,
            model_output="logits",
        )
        x_0 = self._source(labels.shape[0], None, dev, generator)
        extras, guidance = {}, {}
        if self.num_classes:
            extras["label"] = _labels_for_model(labels, self.num_classes)
            if cfg_scale != 0.0:
                null = torch.full_like(labels, self.num_classes)
                guidance = {
                    "guidance_scale": cfg_scale,
                    "unconditional_model_extras": {"label": null},
                }
        tokens = solver.sample(x_0, step_size=1.0 / nfe, generator=generator, **guidance, **extras)
        tokens = tokens.clamp(0, self.levels - 1)
        calls = nfe * (2 if guidance else 1)
        return levels_to_uint8(tokens, self.levels), calls


def make_flow(cfg: TrainConfig, shape, num_classes: int, levels: int):
    """The objective of ``cfg.flow`` (and ``cfg.objective``)."""
    if getattr(cfg, "objective", "fm") != "fm":
        from fm_image.flow_map import FlowMapObjective

        return FlowMapObjective(cfg, shape, num_classes, levels)
    if cfg.flow == "discrete":
        return DiscreteFlow(cfg, shape, num_classes, levels)
    return ContinuousFlow(cfg, shape, num_classes, levels)
