"""The compile contract of fm-riemann (issue 12): training and solver steps compile whole.

Membership checks and the sphere's / SO(3)'s rare-branch tests read values only in eager mode on
CPU; under ``torch.compile(fullgraph=True)`` they must neither break the graph nor change values.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fm_core import CondOTScheduler
from fm_core.testing import compile_fullgraph, fresh_dynamo  # noqa: F401 (autouse fixture)
from fm_core.utils import value_checks
from fm_riemann import (
    SO3,
    FlatTorus,
    GeodesicProbPath,
    RiemannianFlowMatchingLoss,
    RiemannianODESolver,
    Sphere,
)

_compile = compile_fullgraph


class _Field(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(dim + 1, 32), nn.SiLU(), nn.Linear(32, dim))

    def forward(self, x, t):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        flat = x.reshape(x.shape[0], -1)
        return self.body(torch.cat([flat, t[:, None].to(x.dtype)], -1)).view_as(x)


def _points(manifold, n, generator):
    if isinstance(manifold, SO3):
        return manifold.random_uniform(n, 3, 3).as_subclass(torch.Tensor)
    x = torch.randn(n, 3, generator=generator, dtype=torch.float32)
    return manifold.projx(x).as_subclass(torch.Tensor)


MANIFOLDS = [Sphere(), FlatTorus(), SO3()]


@pytest.mark.parametrize("manifold", MANIFOLDS, ids=lambda m: type(m).__name__)
def test_geodesic_training_step_compiles_and_matches_eager(manifold):
    path = GeodesicProbPath(CondOTScheduler(), manifold)
    g = torch.Generator().manual_seed(1)
    x_0, x_1 = _points(manifold, 8, g), _points(manifold, 8, g)
    model = _Field(x_0[0].numel())
    loss_fn = RiemannianFlowMatchingLoss(path)

    def step(x_0, x_1, t):
        sample = path.sample(x_0, x_1, t)
        return loss_fn(manifold.proju(sample.x_t, model(sample.x_t, sample.t)), sample)

    t = torch.rand(8, generator=g)
    loss = step(x_0, x_1, t)
    loss.backward()
    eager = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    model.zero_grad()
    loss = _compile(step)(x_0, x_1, t)
    loss.backward()
    torch.testing.assert_close(loss.detach(), eager[0])
    for p, ref in zip(model.parameters(), eager[1]):
        torch.testing.assert_close(p.grad, ref)


def test_antipodal_sphere_points_compile_to_the_eager_values():
    """The antipodal branch is taken without reading the mask back while compiling."""
    sphere = Sphere()
    path = GeodesicProbPath(CondOTScheduler(), sphere)
    x_0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    x_1 = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # one antipodal pair
    t = torch.tensor([0.5, 0.5])
    eager = path.sample(x_0, x_1, t)
    compiled = _compile(lambda a, b, s: path.sample(a, b, s).dx_t)(x_0, x_1, t)
    torch.testing.assert_close(compiled, eager.dx_t)


@pytest.mark.parametrize("manifold", MANIFOLDS, ids=lambda m: type(m).__name__)
def test_riemannian_solver_step_compiles_and_matches_eager(manifold):
    x = _points(manifold, 6, torch.Generator().manual_seed(2))
    solver = RiemannianODESolver(manifold, _Field(x[0].numel()))

    def one_step(x):
        return solver.sample(x, step_size=None, method="midpoint", time_grid=[0.0, 0.1])

    with torch.no_grad():
        torch.testing.assert_close(_compile(one_step)(x), one_step(x))


def test_membership_check_skips_while_compiling_and_raises_in_eager():
    path = GeodesicProbPath(CondOTScheduler(), Sphere())
    off = torch.tensor([[2.0, 0.0, 0.0]])  # norm 2
    on = torch.tensor([[0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="x_0 must lie on the manifold Sphere"):
        path.sample(off, on, torch.tensor([0.5]))
    out = _compile(lambda a, b, t: path.sample(a, b, t).x_t)(off, on, torch.tensor([0.5]))
    with value_checks("off"):  # the compiled graph computes what eager computes unchecked
        torch.testing.assert_close(out, path.sample(off, on, torch.tensor([0.5])).x_t)
