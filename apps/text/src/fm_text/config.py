"""The training configuration of a run, stored as ``RUN_DIR/config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fm_core.training import RunDirectory
from fm_text.model.transformer import PRESETS, ModelConfig

__all__ = ["APP", "RESUMABLE_FIELDS", "TrainConfig", "load_config", "run_directory"]

APP = "fm-text"

MODELS = ("flow", "ar")
SOURCES = ("mask", "uniform")
LOSSES = ("gkl", "ce")
TIME_SAMPLINGS = ("uniform", "kappa", "elbo")
FUSED_LOSS = ("auto", "on", "off")

#: Fields a resumed run may change; every other field must match the stored config.
RESUMABLE_FIELDS = (
    "steps",
    "eval_every",
    "log_every",
    "patience",
    "compile",
    "fused_loss",
    "progress",
    "cache_dir",
)


@dataclass
class TrainConfig:
    """Everything that defines a training run (the command line's ``train`` options).

    Attributes:
        data: ``pydoc``, ``pystdlib``, or a local file or folder.
        model: ``flow`` (discrete flow matching) or ``ar`` (autoregressive baseline).
        steps: optimiser steps in total (a resumed run continues up to this number).
        preset: model size, a key of ``PRESETS``; ``dim``/``depth``/``heads`` override it.
        conv_kernel: width of the depthwise convolution in each block (0: attention only).
        block_size: block diffusion (flow runs with a mask source): blocks of this many tokens,
            each a masked diffusion conditioned on the clean blocks before it (0: off, one
            diffusion over the whole sequence). ``context`` must be a multiple of it.
        context: tokens per training sequence.
        vocab_size: BPE vocabulary size (ignored with ``tokenizer``).
        tokenizer: a local ``tokenizer.json`` instead of training one.
        val_fraction: share of the corpus' characters held out for validation (by document).
        batch_size: the global batch: sequences per optimiser step, summed over processes.
        lr: peak AdamW learning rate; warmup ``warmup_steps`` steps, cosine decay over ``steps``
            to ``lr * min_lr_ratio``.
        source: ``mask`` or ``uniform`` source distribution (flow).
        scheduler_n: $n$ of ``PolynomialConvexScheduler`` ($\\kappa_t = t^n$).
        loss: ``gkl`` (generalized KL, the ELBO's integrand) or ``ce`` (cross-entropy).
        time_sampling: ``uniform`` ($t$), ``kappa`` ($\\kappa_t$ uniform) or ``elbo``
            ($\\kappa = 1 - w^2$, $w$ uniform), each stratified over the batch and importance-weighted
            so that the generalized KL stays an unbiased ELBO estimate.
        dropout: dropout of the transformer (``None``: 0.1 for ``ar``, 0 for ``flow``).
        fused_loss: ``on``: the generalized KL fused with the output projection by fm-kernels
            (needs ``loss="gkl"`` and fm-kernels; on CUDA the logits never exist in full, on CPU
            fm-kernels' torch reference builds them); ``auto``: on for ``gkl`` flow runs on CUDA
            when fm-kernels is installed; ``off``: never.
        eval_every: steps between validation evaluations (and checkpoints).
        patience: stop after this many evaluations without a better validation score (0: never).
        cache_dir: folder of the token caches (``RUN_DIR/cache`` when ``None``).
    """

    data: str = "pydoc"
    model: str = "flow"
    steps: int = 6000
    preset: str = "tiny"
    dim: int | None = None
    depth: int | None = None
    heads: int | None = None
    conv_kernel: int = 5
    block_size: int = 0
    context: int = 64
    vocab_size: int = 2048
    tokenizer: str | None = None
    val_fraction: float = 0.1
    batch_size: int = 8
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    source: str = "mask"
    scheduler_n: float = 1.0
    loss: str = "ce"
    time_sampling: str = "uniform"
    dropout: float | None = None
    eval_every: int = 100
    eval_sequences: int = 128
    eval_time_samples: int = 4
    patience: int = 0
    log_every: int = 10
    seed: int = 0
    compile: bool = False
    fused_loss: str = "auto"
    progress: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        _choice("model", self.model, MODELS)
        _choice("source", self.source, SOURCES)
        _choice("loss", self.loss, LOSSES)
        _choice("time_sampling", self.time_sampling, TIME_SAMPLINGS)
        _choice("fused_loss", self.fused_loss, FUSED_LOSS)
        if self.fused_loss == "on" and (self.model != "flow" or self.loss != "gkl"):
            raise ValueError(
                "fused_loss 'on' fuses the flow model's generalized KL: it needs model 'flow' and "
                f"loss 'gkl', got model {self.model!r} and loss {self.loss!r}"
            )
        _choice("preset", self.preset, tuple(PRESETS))
        for name in ("steps", "context", "batch_size", "eval_every", "eval_sequences"):
            _positive_int(name, getattr(self, name))
        _positive_int("eval_time_samples", self.eval_time_samples)
        _positive_int("log_every", self.log_every)
        for name in ("warmup_steps", "patience", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        for name in ("dim", "depth", "heads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.vocab_size < 260:
            raise ValueError(f"vocab_size must be >= 260 (bytes + specials), got {self.vocab_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive, got {self.grad_clip}")
        if not self.scheduler_n > 0:
            raise ValueError(f"scheduler_n must be positive, got {self.scheduler_n}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        bs = self.block_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 0:
            raise ValueError(f"block_size must be a non-negative int, got {bs!r}")
        if bs and (self.model != "flow" or self.source != "mask" or self.context % bs):
            raise ValueError(
                f"block_size {bs}: block diffusion needs model 'flow', source 'mask' and a "
                f"context that is a multiple of it; got model {self.model!r}, source "
                f"{self.source!r}, context {self.context}"
            )
        if bs and self.fused_loss == "on":
            raise ValueError("fused_loss 'on' is not available with block_size > 0")
        if self.model == "ar" and self.source != "mask":
            raise ValueError("source applies to flow runs only; leave it at 'mask' for --model ar")

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The transformer's shape for a tokenizer of ``vocab_size`` ids."""
        size = dict(PRESETS[self.preset])
        for name in ("dim", "depth", "heads"):
            if getattr(self, name) is not None:
                size[name] = getattr(self, name)
        dropout = self.dropout if self.dropout is not None else (0.1 if self.model == "ar" else 0.0)
        return ModelConfig(
            vocab_size=vocab_size,
            context=self.context,
            causal=self.model == "ar",
            dropout=dropout,
            conv_kernel=self.conv_kernel,
            block_size=self.block_size,
            **size,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, run_dir: str | Path) -> None:
        """Write ``RUN_DIR/config.json`` atomically (tagged ``"app": "fm-text"``)."""
        run_directory(run_dir).write_config(self.to_dict())


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def run_directory(run_dir: str | Path) -> RunDirectory:
    """The fm-text run in ``run_dir`` (its config, resume rules, best and latest checkpoints)."""
    # accept_untagged: runs written before config.json carried "app" still load and resume.
    # renamed: ``warmup`` became ``warmup_steps`` (one vocabulary with fm-image).
    return RunDirectory(
        run_dir, app=APP, resume_free=RESUMABLE_FIELDS, accept_untagged=True,
        renamed={"warmup": "warmup_steps"},
    )  # fmt: skip


def load_config(run_dir: str | Path) -> TrainConfig:
    """Read ``RUN_DIR/config.json``.

    Raises:
        RunError: ``run_dir`` is not an fm-text run (no readable ``config.json``).
    """
    raw = run_directory(run_dir).read_config()
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in raw.items() if k in known})
