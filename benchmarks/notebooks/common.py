"""The two libraries the notebook re-runs switch between, and the helpers they share.

Each notebook script takes a ``lib`` namespace holding exactly the names the reference's example
notebook imports; ``reference()`` fills it from ``flow_matching`` 1.0.10 and ``ours()`` from the
fm packages, so the notebook's cells run unchanged except for where the names come from (the
migration guide's import table). Run a script with ``--lib reference`` / ``--lib ours`` or, by
default, both in one process, side by side, from the same seeds.
"""

from __future__ import annotations

import math
import statistics
import time
from types import SimpleNamespace

import torch


def _namespace(name: str, *objects) -> SimpleNamespace:
    return SimpleNamespace(name=name, **{obj.__name__: obj for obj in objects})


def reference() -> SimpleNamespace:
    from flow_matching.loss import MixturePathGeneralizedKL
    from flow_matching.path import AffineProbPath, GeodesicProbPath, MixtureDiscreteProbPath
    from flow_matching.path.scheduler import CondOTScheduler, PolynomialConvexScheduler
    from flow_matching.solver import (
        MixtureDiscreteEulerSolver,
        ODESolver,
        RiemannianODESolver,
        Solver,
    )
    from flow_matching.utils import ModelWrapper
    from flow_matching.utils.manifolds import FlatTorus, Manifold, Sphere

    return _namespace(
        "reference", MixturePathGeneralizedKL, AffineProbPath, GeodesicProbPath,
        MixtureDiscreteProbPath, CondOTScheduler, PolynomialConvexScheduler,
        MixtureDiscreteEulerSolver, ODESolver, RiemannianODESolver, Solver, ModelWrapper,
        FlatTorus, Manifold, Sphere,
    )  # fmt: skip


def ours() -> SimpleNamespace:
    from fm_core.path import AffineProbPath
    from fm_core.path.scheduler import CondOTScheduler, PolynomialConvexScheduler
    from fm_core.solver import ODESolver, Solver
    from fm_core.utils import ModelWrapper
    from fm_discrete.loss import MixturePathGeneralizedKL
    from fm_discrete.path import MixtureDiscreteProbPath
    from fm_discrete.solver import MixtureDiscreteEulerSolver
    from fm_riemann.manifolds import FlatTorus, Manifold, Sphere
    from fm_riemann.path import GeodesicProbPath
    from fm_riemann.solver import RiemannianODESolver

    return _namespace(
        "ours", MixturePathGeneralizedKL, AffineProbPath, GeodesicProbPath,
        MixtureDiscreteProbPath, CondOTScheduler, PolynomialConvexScheduler,
        MixtureDiscreteEulerSolver, ODESolver, RiemannianODESolver, Solver, ModelWrapper,
        FlatTorus, Manifold, Sphere,
    )  # fmt: skip


LIBS = {"reference": reference, "ours": ours}


def checkerboard(batch_size: int, device: str = "cpu") -> torch.Tensor:
    """The notebooks' 2-D checkerboard: 8 squares in [-2, 2)^2, scaled by 1 / 0.45, ``[B, 2]``."""
    x1 = torch.rand(batch_size, device=device) * 4 - 2
    x2_ = torch.rand(batch_size, device=device) - torch.randint(2, (batch_size,), device=device) * 2
    x2 = x2_ + (torch.floor(x1) % 2)
    return torch.stack([x1, x2], dim=1) / 0.45


def gaussian_log_density(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) per sample, ``[B, D] -> [B]`` (the notebooks use ``Independent(Normal)``)."""
    return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def tail_mean(losses: list[float], frac: float = 0.25) -> tuple[float, float]:
    """Mean of the last ``frac`` of a loss curve and its standard error (for "within noise")."""
    tail = losses[-max(2, int(len(losses) * frac)) :]
    return statistics.fmean(tail), statistics.stdev(tail) / math.sqrt(len(tail))


def hist2d_tv(a: torch.Tensor, b: torch.Tensor, bins: int = 20, lim: float = 5.0) -> float:
    """Total variation between the 2-D histograms of two sample sets ``[N, 2]`` on a fixed grid."""

    def hist(x):
        h = torch.histogramdd(x.double().cpu(), bins=[bins, bins], range=[-lim, lim, -lim, lim])
        return h.hist / h.hist.sum()

    return 0.5 * (hist(a) - hist(b)).abs().sum().item()


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
