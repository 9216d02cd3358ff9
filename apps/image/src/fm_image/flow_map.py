"""``--objective meanflow | imf``: a flow-map (average-velocity) model for 1-, 2- and 4-step images.

The recipe is fm-core's: ``MeanFlowLoss`` (one forward-mode JVP per step, adaptive weighting,
classifier-free guidance folded into training with scale ``mf_cfg_scale``), ``TimePairSampler``
(MeanFlow's logit-normal times, ``mf_equal_fraction`` of the pairs with ``r = t``) and
``FlowMapSolver`` (one network evaluation per jump). The network is the run's preset built with
``flow_map=True`` (a second time embedding for ``r - t``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_core import (
    CFGScaledModel,
    FlowMapSolver,
    MeanFlowLoss,
    TimePairSampler,
    UniformTimeSampler,
)
from fm_image.config import TrainConfig
from fm_image.flows import ContinuousFlow, StepSlice, _drop, _labels_for_model

__all__ = ["FlowMapObjective"]

#: MeanFlow's ImageNet time sampler (logit-normal, mean -0.4, std 1, in the paper's time).
MEANFLOW_TIME = (-0.4, 1.0)


class FlowMapObjective(ContinuousFlow):
    """The CondOT path from noise to images in $[-1, 1]$, learnt as a flow map.

    Args:
        cfg: the run's configuration (``objective``, ``mf_equal_fraction``, ``mf_cfg_scale``,
            label dropout).
        shape: ``(C, H, W)``.
        num_classes: classes (0: unconditional; then no guidance is folded in).
        levels: intensity levels of the data.
    """

    flow_map = True
    method_name = "flow-map"

    def __init__(
        self, cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int, levels: int = 256
    ) -> None:
        super().__init__(cfg, shape, num_classes, levels)
        if getattr(cfg, "mf_time", "meanflow") == "uniform":
            self.pairs = TimePairSampler(UniformTimeSampler(), equal_fraction=cfg.mf_equal_fraction)
        else:
            self.pairs = TimePairSampler.from_meanflow(*MEANFLOW_TIME, cfg.mf_equal_fraction)
        self.loss_fn = MeanFlowLoss(
            self.path,
            variant=cfg.objective,
            guidance_scale=cfg.mf_cfg_scale if num_classes else 0.0,
            null_label=num_classes if num_classes else None,
        )

    def loss(
        self, model: nn.Module, x_1: Tensor, labels: Tensor, s: StepSlice, g: torch.Generator
    ) -> Tensor:
        """Mean flow-map loss of ``model`` on images ``x_1`` ``[b, C, H, W]`` with labels ``[b]``."""
        dev = x_1.device
        x_0 = torch.randn((s.size, *self.shape), device=dev, generator=g)[s.lo : s.hi]
        t, r = self.pairs(s.size, device=dev, generator=g)
        t, r = t[s.lo : s.hi], r[s.lo : s.hi]
        extras = {}
        if self.num_classes:
            extras["label"] = _drop(labels, self.cfg, self.num_classes, s, g)
        return self.loss_fn(model, x_0, x_1, t, r, **extras)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        labels: Tensor,
        *,
        nfe: int,
        method: str = "flow-map",
        cfg_scale: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, int]:
        """``nfe`` equal jumps from noise (``method`` is ignored: one evaluation per jump).

        Guidance is already in the weights (``mf_cfg_scale``); a non-zero ``cfg_scale`` adds
        classifier-free guidance on top, at two evaluations per jump (one batched call).
        """
        dev = labels.device
        x_0 = torch.randn((labels.shape[0], *self.shape), device=dev, generator=generator)
        extras = {}
        net: nn.Module = model
        if self.num_classes:
            extras["label"] = _labels_for_model(labels, self.num_classes)
            if cfg_scale != 0.0:
                net = CFGScaledModel(model, cfg_scale, null_label=self.num_classes)
        solver = FlowMapSolver(net)
        grid = torch.linspace(0.0, 1.0, nfe + 1, device=dev)
        x = solver.sample(x_0, time_grid=grid, **extras)
        return self.to_uint8(x), solver.last_nfe
