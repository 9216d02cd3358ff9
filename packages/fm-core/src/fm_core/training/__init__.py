"""Training components shared by the apps and by users' own training scripts.

What every flow-matching training run needs besides the flow itself: a run directory with its
resume rules, per-step seeding and RNG capture, an
exponential moving average of the weights, a warmup + cosine learning-rate schedule, atomic resumable
checkpoints, DDP setup from ``torchrun``'s environment, JSONL (and optionally TensorBoard) metrics and a
progress bar. The pieces are independent; ``fm-image`` and ``fm-text`` are recipes built on them, as
torchtune's recipes build on ``torchtune.training``.

The extra dependencies (safetensors, tqdm, matplotlib) come with ``pip install "fm-core[train]"``.
"""

from __future__ import annotations

from importlib.util import find_spec as _find_spec

_missing = [name for name in ("safetensors", "tqdm") if _find_spec(name) is None]
if _missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"fm_core.training needs {', '.join(_missing)}; install the training extra: "
        'pip install "fm-core[train]"'
    )

from fm_core.training.atomic import (  # noqa: E402
    atomic_path,
    write_json_atomic,
    write_text_atomic,
)
from fm_core.training.checkpoint import (  # noqa: E402
    Checkpointer,
    CheckpointError,
    CheckpointState,
    load_weights,
)
from fm_core.training.cli import (  # noqa: E402
    CLIParser,
    UsageError,
    add_hidden_alias,
    explicit_options,
    run_cli,
)
from fm_core.training.distributed import (  # noqa: E402
    DistributedContext,
    exit_process,
    init_distributed,
    unwrap_model,
)
from fm_core.training.ema import EMA  # noqa: E402
from fm_core.training.metrics import MetricsLogger, plot_metrics, read_metrics  # noqa: E402
from fm_core.training.progress import progress_bar  # noqa: E402
from fm_core.training.run_dir import RunDirectory, RunError  # noqa: E402
from fm_core.training.schedule import warmup_cosine_schedule  # noqa: E402
from fm_core.training.seed import (  # noqa: E402
    capture_rng_state,
    restore_rng_state,
    seed_everything,
    seed_step,
    step_seed,
)

__all__ = [
    "EMA",
    "CLIParser",
    "CheckpointError",
    "CheckpointState",
    "Checkpointer",
    "DistributedContext",
    "MetricsLogger",
    "RunDirectory",
    "RunError",
    "UsageError",
    "add_hidden_alias",
    "atomic_path",
    "capture_rng_state",
    "exit_process",
    "explicit_options",
    "init_distributed",
    "load_weights",
    "plot_metrics",
    "progress_bar",
    "read_metrics",
    "restore_rng_state",
    "run_cli",
    "seed_everything",
    "seed_step",
    "step_seed",
    "unwrap_model",
    "warmup_cosine_schedule",
    "write_json_atomic",
    "write_text_atomic",
]
