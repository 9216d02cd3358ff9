r"""``--objective meanflow | imf | reflow``: flow-map (average-velocity) models for 1-4 step images.

The recipe is fm-core's: ``MeanFlowLoss`` (one forward-mode JVP per step, adaptive weighting,
classifier-free guidance folded into training with scale ``mf_cfg_scale``), ``TimePairSampler``
(MeanFlow's logit-normal times, ``mf_equal_fraction`` of the pairs with ``r = t``) and
``FlowMapSolver`` (one network evaluation per jump). The network is the run's preset built with
``flow_map=True`` (a second time embedding for ``r - t``).

``--objective reflow --teacher RUN``: the same network trained on the teacher's coupling. Before the
first step the run integrates the teacher (an ``--objective fm`` run, its EMA weights, guidance
``mf_cfg_scale``, midpoint steps of ``REFLOW_STEP``) from ``reflow_pairs`` noise draws with
fm-core's ``generate_reflow_pairs`` into ``RUN_OUT/reflow-pairs`` (resumable), starts the network
from the teacher's weights (the ``r - t`` embedding's last layer at zero, so every jump starts as
the teacher's velocity), and trains on ``ReflowCoupling``'s pairs, a fraction ``reflow_one_step``
of each batch at the 1-step jump $(t, r) = (0, 1)$, the rest uniform pairs with
``mf_equal_fraction`` of them at $r = t$: with ``reflow_loss="fm"``
$u(x_t, t, r)$ regresses $x_1 - x_0$ for every $r \ge t$ (the rectified-flow loss, no JVP), with
``"huber"`` (the default) the same error under the pseudo-Huber loss of Lee et al. (2024), with
``"meanflow"`` MeanFlow's identity target on the pairs. The guidance is in the pairs, so no label
is dropped and none is folded into the loss.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor, nn

from fm_core import (
    CFGScaledModel,
    FlowMapSolver,
    MeanFlowLoss,
    TimePairSampler,
    UniformTimeSampler,
)
from fm_core.coupling.reflow import ReflowCoupling, generate_reflow_pairs
from fm_core.training import RunError
from fm_image.config import TrainConfig, read_run_config
from fm_image.flows import ContinuousFlow, StepSlice, _drop, _labels_for_model

__all__ = ["REFLOW_DIR", "REFLOW_STEP", "FlowMapObjective", "check_teacher", "pseudo_huber"]

#: MeanFlow's ImageNet time sampler (logit-normal, mean -0.4, std 1, in the paper's time).
MEANFLOW_TIME = (-0.4, 1.0)
#: The teacher's ODE for reflow pairs: midpoint steps of this size (4 steps, 8 evaluations; the
#: demo model has fd 1.68 there against 1.66 at 20, and its students measured no worse on these
#: pairs than on 8-step ones, at half the cost of 10 steps; benchmarks/RESULTS.md issue 17 round 3).
REFLOW_STEP = 0.25
#: ``--reflow-loss huber``: the pseudo-Huber constant $c$ of $\sqrt{\lVert\Delta\rVert^2 + c^2} - c$
#: (per sample; Lee et al. 2024 use $0.00054\sqrt{d}$, 0.0043 on the digits, which measured alike).
REFLOW_HUBER_C = 0.03
#: Folder of the reflow pairs inside the student's run directory.
REFLOW_DIR = "reflow-pairs"
#: Options a teacher must share with its reflow student (same data, network and classes).
_TEACHER_SAME = ("data", "data_dir", "image_size", "model", "conditional")


def check_teacher(cfg: TrainConfig) -> None:
    """``ValueError`` unless ``cfg.teacher`` is a trained ``--objective fm`` continuous CondOT run
    with the student's data, network preset and conditioning (read from its config only)."""
    try:
        t = read_run_config(cfg.teacher)
    except RunError as e:
        raise ValueError(f"--teacher: {e}") from None
    kind = (t.get("objective", "fm"), t.get("flow"), t.get("scheduler"))
    if kind != ("fm", "continuous", "condot"):
        raise ValueError(
            f"--teacher {cfg.teacher} must be an --objective fm run of --flow continuous and "
            f"--scheduler condot; it has objective/flow/scheduler {'/'.join(map(str, kind))}"
        )
    for name in _TEACHER_SAME:
        if t.get(name) != getattr(cfg, name):
            raise ValueError(
                f"--teacher {cfg.teacher} has {name}={t.get(name)!r}; the student has "
                f"{getattr(cfg, name)!r} (a reflow student starts from the teacher's weights)"
            )


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
        self.reflow = cfg.objective == "reflow"
        self._pairs: tuple[Tensor, Tensor, Tensor | None] | None = None
        if getattr(cfg, "mf_time", "meanflow") == "uniform" or self.reflow:
            self.pairs = TimePairSampler(UniformTimeSampler(), equal_fraction=cfg.mf_equal_fraction)
        else:
            self.pairs = TimePairSampler.from_meanflow(*MEANFLOW_TIME, cfg.mf_equal_fraction)
        self.loss_fn = MeanFlowLoss(
            self.path,
            variant="meanflow" if self.reflow else cfg.objective,
            guidance_scale=cfg.mf_cfg_scale if num_classes and not self.reflow else 0.0,
            null_label=num_classes if num_classes else None,
        )

    def prepare(
        self, model: nn.Module, run_dir, *, fresh: bool, device: torch.device, ctx
    ) -> dict[str, float]:
        """Reflow only: write the teacher's pairs (rank 0; resumable) and load them; on a
        ``fresh`` run, copy the teacher's EMA weights into ``model``. Returns the seconds spent
        (wall and this process's CPU) making pairs (0 when they were already there)."""
        if not self.reflow:
            return {}
        from fm_image.run import load_run  # fm_image.run imports the training loop

        teacher = load_run(self.cfg.teacher, device=str(device))
        if fresh:
            _init_from_teacher(model, teacher.model)
        folder = Path(run_dir) / REFLOW_DIR
        wall, cpu = time.perf_counter(), time.process_time()
        if ctx.is_main:
            net: nn.Module = teacher.model
            if self.num_classes and self.cfg.mf_cfg_scale != 0.0:
                net = CFGScaledModel(net, self.cfg.mf_cfg_scale, null_label=self.num_classes)
            generate_reflow_pairs(
                net, folder, num=self.cfg.reflow_pairs, batch_size=1000, shape=self.shape,
                num_classes=self.num_classes, seed=self.cfg.seed, step_size=REFLOW_STEP,
                method="midpoint", device=device,
            )  # fmt: skip
        ctx.barrier()
        data = ReflowCoupling(folder)
        labels = None if data.labels is None else data.labels.to(device)
        self._pairs = (data.x_0.to(device), data.x_1.to(device), labels)
        return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}

    def loss(
        self, model: nn.Module, x_1: Tensor, labels: Tensor, s: StepSlice, g: torch.Generator
    ) -> Tensor:
        """Mean flow-map loss of ``model`` on images ``x_1`` ``[b, C, H, W]`` with labels ``[b]``."""
        dev = x_1.device
        if self.reflow:
            return self._reflow_loss(model, s, g)
        x_0 = torch.randn((s.size, *self.shape), device=dev, generator=g)[s.lo : s.hi]
        t, r = self.pairs(s.size, device=dev, generator=g)
        t, r = t[s.lo : s.hi], r[s.lo : s.hi]
        extras = {}
        if self.num_classes:
            extras["label"] = _drop(labels, self.cfg, self.num_classes, s, g)
        return self.loss_fn(model, x_0, x_1, t, r, **extras)

    def _reflow_loss(self, model: nn.Module, s: StepSlice, g: torch.Generator) -> Tensor:
        """The loss on stored teacher pairs (drawn for the global batch; this rank's slice)."""
        if self._pairs is None:
            raise RuntimeError("reflow pairs are not loaded: call prepare() before training")
        x_0, x_1, labels = self._pairs
        idx = torch.randint(0, x_0.shape[0], (s.size,), device=x_0.device, generator=g)
        idx = idx[s.lo : s.hi]
        x_0, x_1 = x_0[idx], x_1[idx]
        t, r = self.pairs(s.size, device=x_0.device, generator=g)
        one = torch.rand(s.size, device=x_0.device, generator=g) < self.cfg.reflow_one_step
        t, r = torch.where(one, 0.0, t)[s.lo : s.hi], torch.where(one, 1.0, r)[s.lo : s.hi]
        extras = {"label": labels[idx]} if self.num_classes else {}
        if self.cfg.reflow_loss == "meanflow":
            return self.loss_fn(model, x_0, x_1, t, r, **extras)
        x_t = self.path.sample(x_0, x_1, t).x_t
        u = model(x=x_t, t=t, r=r, **extras)
        err = u.float() - (x_1 - x_0)
        if self.cfg.reflow_loss == "huber":
            return pseudo_huber(err, REFLOW_HUBER_C).mean()
        return err.square().mean()

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


def pseudo_huber(err: Tensor, c: float) -> Tensor:
    r"""Per-sample pseudo-Huber loss $\sqrt{\lVert e\rVert^2 + c^2} - c$ of ``err`` ``[b, ...]``:
    about $\lVert e\rVert^2 / 2c$ for small errors, $\lVert e\rVert$ for large ones. Returns ``[b]``.

    >>> pseudo_huber(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), 0.0).tolist()
    [5.0, 0.0]
    """
    return (err.flatten(1).square().sum(1) + c * c).sqrt() - c


def _init_from_teacher(student: nn.Module, teacher: nn.Module) -> None:
    """Copy ``teacher``'s weights into the flow-map ``student`` (same preset); the student's
    ``r - t`` embedding keeps its first layer and gets a zero last layer, so that it starts equal
    to the teacher's velocity for every jump."""
    try:
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    except RuntimeError as e:  # shapes differ
        raise ValueError(f"the teacher's network does not match the student's: {e}") from None
    if unexpected or any(".gap." not in k for k in missing):
        raise ValueError(
            f"the teacher's network does not match the student's (missing {missing}, "
            f"unexpected {unexpected})"
        )
    last = student.embed.gap[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
