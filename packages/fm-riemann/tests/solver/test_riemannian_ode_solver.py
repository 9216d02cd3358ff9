"""RiemannianODESolver.sample: convergence orders, time grids, agreement with the reference, errors."""

from __future__ import annotations

import math

import pytest
import torch

from fm_core.testing import ReversibleSolverTests
from fm_core.testing.ode import ConvergenceOrderTests, LikelihoodTests
from fm_riemann import RiemannianODESolver, Sphere
from fm_riemann.testing import se3_like, torus_x_sphere

AXIS = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def rotation(x, t):
    """u(x) = (1 + t) e_z × x: exact flow is a rotation about z by t + t²/2."""
    return (1.0 + t) * torch.linalg.cross(AXIS.to(x).expand_as(x), x)


def exact_rotation(x, angle):
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=x.dtype)
    return x @ r.T


X0 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 1.0], [0.3, -1.0, 0.2]]), dim=-1)


class TestRiemannianODESolverShared(ReversibleSolverTests):
    """The shared solver properties, on the sphere with a time-dependent rotation field."""

    methods = {"euler": 1, "midpoint": 2, "heun2": 2, "rk4": 4}  # noqa: RUF012
    round_trip_atol = 1e-8

    @pytest.fixture
    def solver(self):
        return RiemannianODESolver(Sphere(), rotation)

    def make_x_init(self, batch_size, dtype):
        g = torch.Generator().manual_seed(0)
        return (
            Sphere().projx(torch.randn(batch_size, 3, generator=g, dtype=torch.float64)).to(dtype)
        )


def test_likelihood_reports_nfe():
    solver = RiemannianODESolver(Sphere(), rotation)
    log_p0 = lambda x: torch.full(x.shape[:1], -math.log(4 * math.pi), dtype=x.dtype)
    solver.compute_likelihood(X0.double(), log_p0, 0.1, method="midpoint", exact_divergence=True)
    assert solver.last_nfe == 20


class TestOrderOnARotation(ConvergenceOrderTests):
    """The shared order suite on the sphere: every tableau, moved by projx and by expmap."""

    cases = [  # noqa: RUF012
        ("euler", [8, 16, 32, 64], None, {}),
        ("midpoint", [8, 16, 32, 64], None, {}),
        ("heun2", [8, 16, 32, 64], None, {}),
        ("rk4", [8, 16, 32, 64], None, {}),
        ("euler", [8, 16, 32, 64], None, {"step_by": "expmap"}),
        ("midpoint", [8, 16, 32, 64], None, {"step_by": "expmap"}),
        ("heun2", [8, 16, 32, 64], None, {"step_by": "expmap"}),
        # documented: the tangent combination of stages is O(h^3) per step on curved manifolds
        ("rk4", [8, 16, 32, 64], 2, {"step_by": "expmap"}),
    ]

    @pytest.fixture
    def solver(self):
        return RiemannianODESolver(Sphere(), rotation)

    def problem(self):
        x0 = X0.double()
        return x0, exact_rotation(x0, 1.5)

    def error(self, a, b):
        return (a - b).norm().item()


class LinearField(torch.nn.Module):
    """u_t(x) = (1 + t) A x (projected by the solver); A skew: a rotation, divergence-free."""

    def __init__(self):
        super().__init__()
        a = torch.tensor([[0.0, -0.7, 0.2], [0.7, 0.0, -0.4], [-0.2, 0.4, 0.0]])
        self.A = torch.nn.Parameter(a.double())

    def forward(self, x, t):
        return (1.0 + t) * x @ self.A.T


class TestSphereLikelihood(LikelihoodTests):
    """The shared likelihood suite on S^2: a rotation keeps the uniform density 1/(4 pi)."""

    @pytest.fixture
    def solver(self):
        return RiemannianODESolver(Sphere(), LinearField())

    def likelihood_problem(self):
        g = torch.Generator().manual_seed(5)
        x_0 = Sphere().projx(torch.randn(6, 3, generator=g, dtype=torch.float64))
        uniform = lambda x: torch.full(x.shape[:1], -math.log(4 * math.pi), dtype=x.dtype)
        return x_0, uniform, uniform


def test_dopri5_on_the_sphere_matches_the_rotation():
    solver = RiemannianODESolver(Sphere(), rotation)
    x0 = X0.double()
    out = solver.sample(x0, None, method="dopri5", atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out, exact_rotation(x0, 1.5), atol=1e-7, rtol=0)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_samples_stay_on_the_sphere_in_float32(method):
    solver = RiemannianODESolver(Sphere(), rotation)
    x = solver.sample(Sphere().random_uniform(64, 3), 0.01, method=method)
    assert (x.norm(dim=-1) - 1).abs().max() <= 1e-6


def test_time_grid_from_its_first_time_in_either_direction_with_intermediates():
    solver = RiemannianODESolver(Sphere(), rotation)
    x0 = X0.double()
    grid = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    out = solver.sample(x0, 0.01, method="rk4", time_grid=grid, return_intermediates=True)
    assert out.shape == (3, *x0.shape)
    torch.testing.assert_close(out[0], x0)
    for i, t in enumerate(grid.tolist()):  # angle from 0.2 to t of (1 + s): int = t + t²/2 - 0.22
        torch.testing.assert_close(
            out[i], exact_rotation(x0, t + t * t / 2 - 0.22), atol=1e-7, rtol=0
        )
    back = solver.sample(out[-1], 0.01, method="rk4", time_grid=grid.flip(0))
    torch.testing.assert_close(back, x0, atol=1e-7, rtol=0)
    # step_size=None steps on the grid itself
    coarse = solver.sample(x0, None, method="euler", time_grid=torch.linspace(0, 1, 101))
    torch.testing.assert_close(coarse, solver.sample(x0, 0.01, method="euler"))


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_matches_the_reference_solver(method):
    from flow_matching.solver import RiemannianODESolver as RefSolver
    from flow_matching.utils.manifolds import Sphere as RefSphere

    ref = RefSolver(RefSphere(), rotation)
    x0 = X0.double()
    grid = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ours = RiemannianODESolver(Sphere(), rotation).sample(x0, 0.05, method=method)
    theirs = ref.sample(x0, 0.05, method=method, time_grid=grid)
    torch.testing.assert_close(ours, theirs)


def test_product_manifolds():
    m = torus_x_sphere()
    x0 = m.projx(torch.cat([torch.rand(4, 2) * 6, torch.randn(4, 3)], dim=-1))
    field = lambda x, t: torch.cat(
        [torch.ones_like(x[:, :2]), torch.linalg.cross(AXIS.float().expand(4, 3), x[:, 2:])], -1
    )
    out = RiemannianODESolver(m, field).sample(x0, 0.01, method="rk4")
    assert m.check_point_on_manifold(out, atol=1e-5)
    torch.testing.assert_close(out[:, :2], (x0[:, :2] + 1) % (2 * math.pi), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        out[:, 2:], exact_rotation(x0[:, 2:].double(), 1.0).float(), atol=1e-5, rtol=0
    )
    se3 = se3_like()
    g0 = se3.projx(torch.randn(4, 12, dtype=torch.float64))
    g1 = RiemannianODESolver(se3, lambda x, t: torch.randn_like(x)).sample(
        g0, 0.1, method="midpoint"
    )
    assert se3.check_point_on_manifold(g1, atol=1e-8)


def test_enable_grad_keeps_the_graph():
    w = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    solver = RiemannianODESolver(Sphere(), lambda x, t: w * rotation(x, t))
    out = solver.sample(X0.double(), 0.1, method="midpoint", enable_grad=True)
    out.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad)


def test_bad_inputs():
    solver = RiemannianODESolver(Sphere(), rotation)
    with pytest.raises(ValueError, match="x_init must lie on the manifold Sphere"):
        solver.sample(torch.ones(2, 3, dtype=torch.float64), 0.1)
    RiemannianODESolver(Sphere(), rotation, check_points=False).sample(torch.ones(2, 3), 0.1)
    with pytest.raises(TypeError, match="x_init must be a floating-point tensor"):
        solver.sample(torch.ones(2, 3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        solver.sample(X0, 0.1, method="no-such-method")
    with pytest.raises(ValueError, match="step_by must be"):
        solver.sample(X0, 0.1, step_by="retr")
    with pytest.raises(ValueError, match="time_grid must lie in"):
        solver.sample(X0, 0.1, time_grid=torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="step_size must be a positive number"):
        solver.sample(X0, -0.1)
    with pytest.raises(ValueError, match=r"velocity_model must return a tensor of the shape of x"):
        RiemannianODESolver(Sphere(), lambda x, t: x[:, :2]).sample(X0, 0.1)
    from fm_riemann import SO3

    with pytest.raises(ValueError, match=r"x_init has the wrong shape for SO3"):
        RiemannianODESolver(SO3(), lambda x, t: x).sample(
            torch.eye(3).expand(2, 3, 3).reshape(2, 9), 0.1
        )
    with pytest.raises(TypeError, match="velocity_model must be callable"):
        RiemannianODESolver(Sphere(), 3)
