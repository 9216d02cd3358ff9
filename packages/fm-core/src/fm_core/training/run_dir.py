"""A training run's directory: its saved config, resume rules, and loading its weights back.

Both apps keep a run in one folder: ``config.json`` (every option, tagged with the app's name),
``checkpoints/`` (written by :class:`~fm_core.training.Checkpointer`), optionally ``best/`` (a
checkpoint folder of its own holding the best-validation weights), metrics and pictures.
:class:`RunDirectory` holds the rules every app follows for such a folder:

- **Fresh or resumed.** A missing or empty folder starts a fresh run; a folder with this app's
  ``config.json`` resumes it; anything else (a file, another app's run, a folder of other files)
  is refused with :class:`RunError` before anything is written.
- **What a resume may change.** Only the options in ``resume_free`` (the step budget, logging,
  performance switches) may differ from the saved config; any other difference is refused.
- **Options not given keep the run's values.** On the command line only explicitly given options
  override the saved config (:meth:`RunDirectory.merge`), so ``--steps N`` alone resumes a run.
- **A run already at its budget is a no-op.** Asked for ``--steps`` at or below the step the run
  has reached, training does nothing and says so in one line (the command exits 0); a larger
  ``--steps`` continues where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fm_core.training.atomic import write_json_atomic
from fm_core.training.checkpoint import Checkpointer
from fm_core.training.checkpoint import load_weights as _load_weights

CHECKPOINTS = ("best", "latest")


class RunError(ValueError):
    """A run directory that is missing, not this app's run, or incompatible with the request."""


class RunDirectory:
    """The folder of one training run, and the rules for starting, resuming and loading it.

    Args:
        path: the run folder.
        app: the app's name, stored as ``"app"`` in ``config.json`` and checked on reading.
        resume_free: names of the options a resumed run may change; every other option in the
            saved config must match the request.
        accept_untagged: also accept a ``config.json`` without an ``"app"`` entry (runs written
            before the tag existed).
        renamed: old option name -> new name, for configs saved before an option was renamed
            (read back under the new name).

    Example:
        >>> import tempfile
        >>> run = RunDirectory(tempfile.mkdtemp(), app="demo", resume_free={"steps"})
        >>> run.check_resume({"steps": 10, "lr": 0.1}) is None  # empty folder: a fresh run
        True
        >>> run.write_config({"steps": 10, "lr": 0.1})
        >>> run.merge({"steps": 20, "lr": 0.5}, given={"steps"})
        {'steps': 20, 'lr': 0.1}
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        app: str,
        resume_free: Iterable[str] = (),
        accept_untagged: bool = False,
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.app = app
        self.resume_free = frozenset(resume_free)
        self.accept_untagged = accept_untagged
        self.renamed = dict(renamed or {})

    # ------------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        """``RUN/config.json``."""
        return self.path / "config.json"

    @property
    def best_path(self) -> Path:
        """``RUN/best``: a checkpoint folder of its own for the best-validation weights."""
        return self.path / "best"

    def exists(self) -> bool:
        """Whether the folder holds a run (a ``config.json``)."""
        return self.config_path.is_file()

    def checkpointer(self, keep: int = 2) -> Checkpointer:
        """The run's :class:`Checkpointer` (``RUN/checkpoints``)."""
        return Checkpointer(self.path, keep=keep)

    def best_checkpointer(self) -> Checkpointer:
        """The checkpointer of ``RUN/best`` (one checkpoint kept)."""
        return Checkpointer(self.best_path, keep=1)

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or ``None``."""
        return Checkpointer(self.path).latest_step()

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any]:
        """The parsed ``config.json``.

        Raises:
            RunError: the folder does not exist, has no ``config.json``, the file is not a JSON
                object, or it belongs to another app.
        """
        if not self.path.is_dir():
            raise RunError(f"run directory {self.path} does not exist (not an {self.app} run)")
        if not self.config_path.is_file():
            raise RunError(f"{self.path} is not an {self.app} run (no config.json)")
        try:
            obj = json.loads(self.config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunError(f"{self.config_path} is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise RunError(f"{self.config_path} is not an {self.app} run config (not an object)")
        tag = obj.get("app")
        if tag != self.app and not (tag is None and self.accept_untagged):
            raise RunError(
                f'{self.config_path} is not an {self.app} run config (expected "app": "{self.app}")'
            )
        obj.pop("app", None)
        for old, new in self.renamed.items():
            if old in obj and new not in obj:
                obj[new] = obj.pop(old)
        return obj

    def write_config(self, values: Mapping[str, Any]) -> None:
        """Write ``config.json`` atomically (``{"app": app, **values}``), creating the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, {"app": self.app, **values})

    def record_resume(self, values: Mapping[str, Any]) -> None:
        """Rewrite ``config.json`` with the resume-free options of ``values`` (the new budget)."""
        stored = self.read_config()
        stored.update({k: v for k, v in values.items() if k in self.resume_free})
        self.write_config(stored)

    def merge(self, values: Mapping[str, Any], given: Iterable[str]) -> dict[str, Any]:
        """Options for a request on this folder: ``given`` ones from ``values``, others saved.

        Args:
            values: every option of the request (parsed, defaults included).
            given: names of the options given explicitly (see ``explicit_options``).

        Returns:
            ``values`` as is for a fresh folder; for an existing run, each option not in ``given``
            replaced by the saved value (when the saved config has it).
        """
        if not self.exists():
            return dict(values)
        stored = self.read_config()
        given = set(given)
        return {k: (v if k in given or k not in stored else stored[k]) for k, v in values.items()}

    def mismatches(self, requested: Mapping[str, Any]) -> list[str]:
        """``name=saved (requested new)`` for each option that differs and may not change."""
        stored = self.read_config()
        return [
            f"{k}={stored[k]!r} (requested {v!r})"
            for k, v in requested.items()
            if k not in self.resume_free and k in stored and stored[k] != v
        ]

    # ------------------------------------------------------------------ resume
    def check_resume(self, requested: Mapping[str, Any]) -> int | None:
        """Validate the folder for ``requested`` before any work; the step to resume from.

        Returns:
            ``None`` for a fresh run (no folder, an empty one, or a run that never wrote a
            checkpoint is started afresh), else the step of the newest checkpoint.

        Raises:
            RunError: the path is a file, a folder of something else, another app's run, or a run
                whose saved options differ in one that may not change.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"--out {self.path} exists and is not a directory")
        if not self.path.exists() or not any(self.path.iterdir()):
            return None
        if not self.exists():
            raise RunError(
                f"{self.path} is not an {self.app} run (no config.json); pick a new --out"
            )
        diff = self.mismatches(requested)
        if diff:
            raise RunError(
                f"{self.path} holds a run with a different configuration: {'; '.join(diff[:3])}"
                + (" ..." if len(diff) > 3 else "")
                + " (resume with the same options and a larger --steps, or pick a new --out)"
            )
        return self.latest_step()

    def finished_message(self, start: int | None, steps: int) -> str | None:
        """The one line saying a run at or past ``steps`` has nothing to train, else ``None``."""
        if start is None or start < steps:
            return None
        return (
            f"{self.app}: {self.path} is already at step {start} (--steps {steps}): nothing to "
            "train; give a larger --steps to continue"
        )

    # ------------------------------------------------------------------ loading
    def load_weights(
        self,
        module: nn.Module,
        *,
        checkpoint: str = "latest",
        ema: bool = True,
        map_location: str | torch.device = "cpu",
    ) -> tuple[int, str]:
        """Load the run's weights into ``module``: the best-validation copy or the newest checkpoint.

        Args:
            module: a module of the run's architecture.
            checkpoint: ``"latest"``, or ``"best"`` (falls back to ``"latest"`` when the run keeps
                no best copy).
            ema: the EMA weights (default) when saved, else the raw ones.
            map_location: device of the loaded tensors.

        Returns:
            ``(step, which)``: the loaded checkpoint's step and ``"best"`` or ``"latest"``.

        Raises:
            ValueError: ``checkpoint`` is neither ``"best"`` nor ``"latest"``.
            RunError: the run has no checkpoint yet.
        """
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"--checkpoint must be best or latest, got {checkpoint!r}")
        if checkpoint == "best" and Checkpointer(self.best_path).latest_step() is not None:
            source = self.best_path
        else:
            source, checkpoint = self.path, "latest"
        if Checkpointer(source).latest_step() is None:
            raise RunError(f"{self.path} has no checkpoint yet (train it first)")
        step = _load_weights(source, module, ema=ema, map_location=map_location)
        return step, checkpoint
