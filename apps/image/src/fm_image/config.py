"""The resolved training configuration, its validation, and the run directory's ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fm_core.training import RunDirectory, RunError
from fm_image.data import DATASETS
from fm_image.models import PRESETS

#: ``fm-image inpaint``'s defaults, chosen by measurement (see ``fm_image.inpaint``): PiGDM guidance
#: gamma, source temperature tau and the start time t0.
INPAINT_GUIDANCE_SCALE, INPAINT_TEMPERATURE, INPAINT_START_TIME = 3.0, 0.3, 0.2

__all__ = [
    "APP",
    "DISCRETE_PATHS",
    "OBJECTIVES",
    "REFLOW_LOSSES",
    "RESUME_FREE",
    "SCHEDULERS",
    "TIME_SAMPLERS",
    "RunError",
    "TrainConfig",
    "read_run_config",
    "run_directory",
]

APP = "fm-image"
SCHEDULERS = ("condot", "cosine", "vp", "linear-vp", "poly2", "poly3")
TIME_SAMPLERS = ("uniform", "logit-normal", "skewed")
#: ``--flow discrete`` paths: ``mixture`` (mask or uniform source) or ``metric`` (Shaul et al. 2025:
#: $p_t(x \mid x_1) \propto e^{-\beta_t d(x, x_1)}$ over intensity levels, uniform source).
DISCRETE_PATHS = ("mixture", "metric")
#: ``fm``: flow matching (a velocity model); ``meanflow`` / ``imf``: a flow-map model for 1-4 steps;
#: ``reflow``: a flow-map model trained on the noise-image pairs of a ``--teacher`` fm run.
OBJECTIVES = ("fm", "meanflow", "imf", "reflow")
#: ``--reflow-loss``: ``fm`` regresses $u(x_t, t, r)$ on $x_1 - x_0$ of the pair (no JVP);
#: ``huber``: the same with the pseudo-Huber loss of each sample's error (Lee et al. 2024);
#: ``meanflow``: MeanFlow's identity target on the pairs.
REFLOW_LOSSES = ("fm", "huber", "meanflow")
#: ``--objective reflow``'s EMA decay when ``--ema-decay`` is left out (issue 17, round 3).
REFLOW_EMA_DECAY = 0.995
#: Options a resumed run may change; every other field must match the run's config.json.
RESUME_FREE = frozenset(
    {"out", "steps", "log_every", "ckpt_every", "keep", "workers", "compile", "device",
     "tensorboard", "progress", "sample_nfe", "sample_method", "sample_cfg_scale"}
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run (``fm-image train --help`` documents each field).

    ``batch_size`` is the global batch per optimizer step, summed over processes and
    gradient-accumulation micro-steps, so the same configuration trains the same model on any
    number of processes.

    The defaults are the recipe measured on the digits (the demo's, benchmarks/RESULTS.md):
    10 000 steps at a peak rate of 2e-3 with a cosine decay to zero over the run's ``steps``
    (``decay_steps=None``). The earlier default, a constant 1e-3 after warmup over 6 000 steps,
    reached fd 2.43 against the demo's 1.66 (issue 16).
    """

    out: str = "runs/digits"
    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    flow: str = "continuous"
    model: str = "tiny"
    conditional: bool = True
    steps: int = 10000
    batch_size: int = 256
    grad_accum: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 200
    decay_steps: int | None = None
    min_lr_ratio: float = 0.0
    ema_decay: float | None = None
    grad_clip: float = 1.0
    label_dropout: float = 0.1
    scheduler: str = "condot"
    time_sampler: str = "uniform"
    source: str = "mask"
    path: str = "mixture"
    metric_distance: str = "abs"
    metric_beta: float = 10.0
    metric_power: float = 1.0
    discrete_loss: str = "gkl"
    ot_coupling: bool = False
    objective: str = "fm"
    mf_equal_fraction: float = 0.5
    mf_cfg_scale: float = 0.3
    mf_time: str = "meanflow"
    teacher: str | None = None
    reflow_pairs: int = 120000
    reflow_loss: str = "huber"
    reflow_one_step: float = 0.5
    seed: int = 0
    bf16: bool = True
    compile: bool = False
    device: str = "auto"
    workers: int = 0
    log_every: int = 50
    ckpt_every: int = 1000
    keep: int = 2
    tensorboard: bool = False
    progress: bool = True
    sample_nfe: int = 20
    sample_method: str = "midpoint"
    sample_cfg_scale: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # ``ema_decay=None``: 0.999, or 0.995 for reflow (its few-thousand-step students measured
        # better with the shorter average); resolved here so that config.json records the value
        if self.ema_decay is None:
            self.ema_decay = REFLOW_EMA_DECAY if self.objective == "reflow" else 0.999

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the option for any bad value (before any work)."""
        self._check_data_model()
        self._check_optimizer()
        self._check_objective()
        self._check_run()
        return self

    def _check_data_model(self) -> None:
        _need(
            self.data in DATASETS, f"--data must be one of {', '.join(DATASETS)}; got {self.data!r}"
        )
        _need(
            self.flow in ("continuous", "discrete"),
            f"--flow must be continuous or discrete; got {self.flow!r}",
        )
        _need(
            self.model in PRESETS,
            f"--model must be one of {', '.join(PRESETS)}; got {self.model!r}",
        )
        _need(
            self.image_size is None or self.image_size >= 4,
            f"--image-size must be >= 4, got {self.image_size}",
        )

    def _check_optimizer(self) -> None:
        _need(self.steps >= 1, f"--steps must be >= 1, got {self.steps}")
        _need(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _need(self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}")
        _need(
            self.batch_size % self.grad_accum == 0,
            f"--batch-size {self.batch_size} must be divisible by --grad-accum {self.grad_accum}",
        )
        _need(self.lr > 0, f"--lr must be positive, got {self.lr}")
        _need(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        _need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "--beta1/--beta2 must lie in [0, 1)")
        _need(self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        _need(
            self.decay_steps is None
            or self.decay_steps == 0
            or self.decay_steps >= self.warmup_steps,
            "--decay-steps must be 0 (constant rate), >= --warmup-steps, or left out (decay over "
            f"--steps), got {self.decay_steps}",
        )
        _need(
            0 <= self.min_lr_ratio <= 1,
            f"--min-lr-ratio must lie in [0, 1], got {self.min_lr_ratio}",
        )
        _need(0 <= self.ema_decay < 1, f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        _need(self.grad_clip >= 0, f"--grad-clip must be >= 0 (0: off), got {self.grad_clip}")

    def _check_objective(self) -> None:
        _need(
            0 <= self.label_dropout <= 1,
            f"--label-dropout must lie in [0, 1], got {self.label_dropout}",
        )
        _need(
            self.scheduler in SCHEDULERS,
            f"--scheduler must be one of {', '.join(SCHEDULERS)}; got {self.scheduler!r}",
        )
        _need(
            self.flow == "continuous" or self.scheduler in ("condot", "poly2", "poly3"),
            f"--flow discrete needs a convex --scheduler (condot, poly2, poly3); got {self.scheduler!r}",
        )
        _need(
            self.time_sampler in TIME_SAMPLERS,
            f"--time-sampler must be one of {', '.join(TIME_SAMPLERS)}; got {self.time_sampler!r}",
        )
        _need(
            self.source in ("mask", "uniform"),
            f"--source must be mask or uniform; got {self.source!r}",
        )
        self._check_discrete_path()
        _need(
            not (self.ot_coupling and self.flow == "discrete"),
            "--ot-coupling applies to --flow continuous only",
        )
        _need(
            self.objective in OBJECTIVES,
            f"--objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}",
        )
        _need(
            self.objective == "fm" or (self.flow == "continuous" and self.scheduler == "condot"),
            f"--objective {self.objective} needs --flow continuous and --scheduler condot",
        )
        _need(
            0 <= self.mf_equal_fraction <= 1,
            f"--mf-equal-fraction must lie in [0, 1], got {self.mf_equal_fraction}",
        )
        _need(
            self.mf_time in ("meanflow", "uniform"),
            f"--mf-time must be meanflow or uniform; got {self.mf_time!r}",
        )
        self._check_reflow()

    def _changed(self, *names: str) -> list[str]:
        """The options among ``names`` set away from their defaults, as on the command line."""
        default = {f.name: f.default for f in dataclasses.fields(self)}
        return ["--" + n.replace("_", "-") for n in names if getattr(self, n) != default[n]]

    def _check_reflow(self) -> None:
        _need(
            (self.objective == "reflow") == (self.teacher is not None),
            "--objective reflow needs --teacher RUN (an fm-image run of --objective fm), and "
            "--teacher applies to --objective reflow only",
        )
        unused = self._changed("reflow_pairs", "reflow_loss", "reflow_one_step")
        _need(
            self.objective == "reflow" or not unused,
            f"{', '.join(unused)} {'applies' if len(unused) == 1 else 'apply'} to --objective "
            "reflow only",
        )
        _need(self.reflow_pairs >= 1, f"--reflow-pairs must be >= 1, got {self.reflow_pairs}")
        _need(
            0 <= self.reflow_one_step <= 1,
            f"--reflow-one-step must lie in [0, 1], got {self.reflow_one_step}",
        )
        _need(
            self.reflow_loss in REFLOW_LOSSES,
            f"--reflow-loss must be one of {', '.join(REFLOW_LOSSES)}; got {self.reflow_loss!r}",
        )
        if self.teacher is not None:
            from fm_image.flow_map import check_teacher

            check_teacher(self)

    def _check_discrete_path(self) -> None:
        _need(
            self.path in DISCRETE_PATHS,
            f"--path must be one of {', '.join(DISCRETE_PATHS)}; got {self.path!r}",
        )
        _need(
            self.discrete_loss in ("gkl", "ce"),
            f"--discrete-loss must be gkl or ce; got {self.discrete_loss!r}",
        )
        _need(
            self.flow == "discrete" or not self._changed("discrete_loss"),
            "--discrete-loss applies to --flow discrete only",
        )
        if self.path != "metric":
            unused = self._changed("metric_distance", "metric_beta", "metric_power")
            _need(
                not unused,
                f"{', '.join(unused)} {'applies' if len(unused) == 1 else 'apply'} to --path "
                "metric only",
            )
            return
        _need(self.flow == "discrete", "--path metric applies to --flow discrete only")
        _need(
            self.metric_distance in ("abs", "square"),
            f"--metric-distance must be abs or square; got {self.metric_distance!r}",
        )
        _need(self.metric_beta > 0, f"--metric-beta must be positive, got {self.metric_beta}")
        _need(self.metric_power >= 1, f"--metric-power must be >= 1, got {self.metric_power}")
        _need(
            self.time_sampler in ("uniform", "logit-normal"),
            f"--path metric needs --time-sampler uniform or logit-normal; got {self.time_sampler!r}",
        )

    def _check_run(self) -> None:
        _need(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"--device must be auto, cpu or cuda[:N]; got {self.device!r}",
        )
        _need(self.workers >= 0, f"--workers must be >= 0, got {self.workers}")
        _need(self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}")
        _need(self.ckpt_every >= 1, f"--ckpt-every must be >= 1, got {self.ckpt_every}")
        _need(self.keep >= 1, f"--keep must be >= 1, got {self.keep}")
        _need(self.sample_nfe >= 1, f"--sample-nfe must be >= 1, got {self.sample_nfe}")

    def to_json(self) -> dict[str, Any]:
        return {"app": APP, **dataclasses.asdict(self)}

    def options(self) -> dict[str, Any]:
        """The options a run directory compares on resume (every field but ``extra``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``; a clear error without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def run_directory(run_dir: str | Path) -> RunDirectory:
    """The fm-image run in ``run_dir`` (its config, resume rules and checkpoints)."""
    return RunDirectory(run_dir, app=APP, resume_free=RESUME_FREE)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of an fm-image run, or ``RunError`` naming what is wrong."""
    return run_directory(run_dir).read_config()
