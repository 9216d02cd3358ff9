"""Issue 12 §3 for fm-riemann: points off the manifold, non-finite solves, shapes, devices."""

from __future__ import annotations

import math

import pytest
import torch

from fm_core import CondOTScheduler
from fm_core.utils import value_checks
from fm_riemann import (
    SO3,
    FlatTorus,
    GeodesicProbPath,
    RiemannianFlowMatchingLoss,
    RiemannianODESolver,
    Sphere,
)


def _rotations(n):
    return SO3().random_uniform(n, 3, 3).as_subclass(torch.Tensor)


def _off_manifold_cases():
    s = Sphere().projx(torch.randn(3, 3))
    r = _rotations(3)
    reflect = torch.diag(torch.tensor([1.0, 1.0, -1.0]))
    return {
        "sphere, norm 2": (Sphere(), 2 * s, s),
        "SO(3), det 8": (SO3(), 2 * r, r),
        "SO(3), det -1": (SO3(), r @ reflect, r),
        "torus, angle 7 > 2 pi": (FlatTorus(), torch.full((3, 2), 7.0), torch.ones(3, 2)),
        "torus, angle -1": (FlatTorus(), torch.full((3, 2), -1.0), torch.ones(3, 2)),
    }


@pytest.mark.parametrize("case", list(_off_manifold_cases()))
def test_geodesic_path_rejects_points_off_the_manifold(case):
    manifold, bad, good = _off_manifold_cases()[case]
    path = GeodesicProbPath(CondOTScheduler(), manifold)
    t = torch.rand(3)
    with pytest.raises(ValueError, match="x_0 must lie on the manifold"):
        path.sample(bad, good, t)  # was: trained on meaningless targets (torus: wrapped)
    with pytest.raises(ValueError, match="x_1 must lie on the manifold"):
        path.sample(good, bad, t)
    with value_checks("off"):  # the documented escape hatch (and what a compiled step does)
        path.sample(bad, good, t)
    sample = path.sample(manifold.projx(bad), good, t)  # the fix the message suggests
    assert torch.isfinite(sample.x_t).all()


def test_integer_points_are_a_type_error():
    path = GeodesicProbPath(CondOTScheduler(), FlatTorus())
    x = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="x_0 must be a floating-point tensor"):
        path.sample(x, x, torch.rand(2))


def _uniform_log_p0(x):
    return torch.full(x.shape[:1], -math.log(4 * math.pi), dtype=x.dtype)


def test_non_finite_solve_is_an_error():
    sphere = Sphere()
    solver = RiemannianODESolver(sphere, lambda x, t: x * float("nan"), check_points=True)
    x = sphere.projx(torch.randn(4, 3))
    with pytest.raises(ValueError, match="the sample holds 12 non-finite value"):
        solver.sample(x, step_size=0.25)
    with pytest.raises(ValueError, match="non-finite"):
        solver.compute_likelihood(x, _uniform_log_p0, step_size=0.25, exact_divergence=True)
    with value_checks("off"):
        assert torch.isnan(solver.sample(x, step_size=0.25)).all()


@pytest.mark.parametrize("bad", [lambda x: _uniform_log_p0(x)[:, None], lambda x: x.sum() * 0])
def test_log_p0_must_return_shape_b(bad):
    sphere = Sphere()
    solver = RiemannianODESolver(sphere, lambda x, t: torch.zeros_like(x))
    x = sphere.projx(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"shape \[B\] = \[4\]"):
        solver.compute_likelihood(x, bad, step_size=0.5)


def test_empty_batches_and_devices():
    sphere = Sphere()
    path = GeodesicProbPath(CondOTScheduler(), sphere)
    e = torch.zeros(0, 3)
    with pytest.raises(ValueError, match="x_0 must hold at least one sample"):
        path.sample(e, e, torch.zeros(0))
    with pytest.raises(ValueError, match="x_init must hold at least one sample"):
        RiemannianODESolver(sphere, lambda x, t: x).sample(e, step_size=0.5)
    x = sphere.projx(torch.randn(2, 3))
    with pytest.raises(ValueError, match="x_1 is on meta but x_0 is on cpu"):
        path.sample(x, x.to("meta"), torch.rand(2))
    sample = path.sample(x, x.flip(0), torch.rand(2))
    with pytest.raises(ValueError, match=r"velocity is on meta but path_sample\.dx_t is on cpu"):
        RiemannianFlowMatchingLoss(path)(sample.dx_t.to("meta"), sample)
