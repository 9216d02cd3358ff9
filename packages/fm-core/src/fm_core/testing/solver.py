"""Properties every continuous-time ``Solver`` must have. Subclass and provide the fixtures."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from fm_core.solver.solver import Solver

__all__ = [
    "GaussianFlow",
    "ReversibleSolverTests",
    "SolverTests",
]


class GaussianFlow(nn.Module):
    r"""The exact marginal velocity of the CondOT path from $N(0, I)$ to $N(\mu, s^2 I)$: a closed form.

    With $\sigma_t = 1 - t$, $\alpha_t = t$, $v_t = (1-t)^2 + t^2 s^2$ and
    $\dot v_t = -2(1-t) + 2 t s^2$, the velocity is linear in $x$:
    $u_t(x) = \mu + \frac{\dot v_t}{2 v_t}(x - t\mu)$; the flow map is
    $x_t = t\mu + \sqrt{v_t}\, x_0$ and $p_t = N(t\mu, v_t I)$, so solvers and likelihoods can
    be checked against exact values. ``mu`` and ``log_s`` are parameters (gradient tests).

    Args:
        mu: target mean, shape of one sample (e.g. ``[D]`` or ``[C, H, W]``).
        s: target standard deviation, positive.

    Example:
        >>> flow = GaussianFlow(torch.ones(2), 0.5)
        >>> x_1 = ODESolver(flow).sample(torch.randn(8, 2), step_size=0.05, method="rk4")
    """

    def __init__(self, mu: Tensor, s: float):
        super().__init__()
        self.mu = nn.Parameter(mu.clone())
        self.log_s = nn.Parameter(torch.tensor(math.log(s), dtype=mu.dtype))

    def _var(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s2 = torch.exp(2 * self.log_s)
        return (1 - t) ** 2 + t**2 * s2, -2 * (1 - t) + 2 * t * s2

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Velocity at ``x`` (``[B, ...]``) and time ``t`` (0-dim)."""
        var, d_var = self._var(t.to(x.dtype))
        mu = self.mu.to(x.dtype)
        return mu + d_var / (2 * var) * (x - t * mu)

    def flow(self, x_0: Tensor, t: float) -> Tensor:
        r"""The exact flow map $x_t = t\mu + \sqrt{v_t} x_0$."""
        var, _ = self._var(torch.tensor(t, dtype=x_0.dtype))
        return t * self.mu + var.sqrt() * x_0

    def log_prob(self, x: Tensor, t: float) -> Tensor:
        r"""$\log p_t(x)$ of $N(t\mu, v_t I)$, shape ``[B]``."""
        var, _ = self._var(torch.tensor(t, dtype=x.dtype))
        d = x[0].numel()
        sq = ((x - t * self.mu) ** 2).flatten(1).sum(-1)
        return -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)


class SolverTests:
    """Shared tests for solvers with ``sample(x_init, step_size, [method,] time_grid, ...)``.

    Subclass as ``class TestMine(SolverTests)`` and provide:

    - the ``solver`` fixture (a ``Solver`` whose model is smooth and cheap);
    - ``make_x_init(batch_size, dtype)`` returning initial states of shape ``[B, ...]`` (a
      discrete solver may ignore ``dtype`` and return token ids);
    - optionally ``methods``: ``{name: model evaluations per step}`` of the fixed-step methods to
      check (default ``{"euler": 1, "midpoint": 2}``); ``{None: k}`` for a solver without a
      ``method`` argument (then the unknown-method test does not apply);
    - optionally ``sample_kwargs()``: extra keyword arguments for every ``sample`` call, built
      afresh for each call (a stochastic solver returns a freshly seeded ``generator`` so that
      two calls draw the same numbers);
    - optionally ``round_trip_atol`` (used by ``ReversibleSolverTests``);
    - optionally ``assert_close(a, b, atol)`` (``torch.testing.assert_close`` by default; a
      manifold solver may compare by distance).

    Every solver reports ``solver.last_nfe``, the model evaluations of its last call (set
    ``reports_nfe = False`` to opt out).
    """

    methods: dict[str | None, int] = {"euler": 1, "midpoint": 2}  # noqa: RUF012 - read-only
    round_trip_atol: float = 1e-4
    reports_nfe: bool = True

    @pytest.fixture
    def solver(self) -> Solver:
        raise NotImplementedError("subclasses provide the solver fixture")

    def make_x_init(self, batch_size: int, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def sample_kwargs(self) -> dict:
        return {}

    def assert_close(self, a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
        torch.testing.assert_close(a, b, rtol=0.0, atol=atol)

    def sample(self, solver: Solver, x: torch.Tensor, method: str | None, **kwargs):
        """``solver.sample(x_init=x, method=method, **sample_kwargs(), **kwargs)``."""
        if method is not None:
            kwargs["method"] = method
        return solver.sample(x_init=x, **self.sample_kwargs(), **kwargs)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_end_state_shape_and_dtype(self, solver, dtype):
        x = self.make_x_init(5, dtype)
        for method in self.methods:
            out = self.sample(solver, x, method, step_size=0.25)
            assert out.shape == x.shape, method
            assert out.dtype == x.dtype, method
            assert bool(torch.isfinite(out).all()), method

    def test_nfe_counts_model_evaluations(self, solver):
        if not self.reports_nfe:
            pytest.skip("reports_nfe = False: the solver does not report last_nfe")
        x = self.make_x_init(3, torch.float64)
        for method, stages in self.methods.items():
            self.sample(solver, x, method, step_size=0.1)
            assert solver.last_nfe == 10 * stages, method
            # a grid with knots refines each interval: [0, 0.5] and [0.5, 1] at 0.2 -> 3 + 3 steps
            self.sample(solver, x, method, step_size=0.2, time_grid=[0.0, 0.5, 1.0])
            assert solver.last_nfe == 6 * stages, method
            # float32 knots add no steps from rounding: linspace(0, 1, 6) at 0.02 is 50 steps
            self.sample(solver, x, method, step_size=0.02, time_grid=torch.linspace(0, 1, 6))
            assert solver.last_nfe == 50 * stages, method

    def test_intermediates_at_grid_times(self, solver):
        x = self.make_x_init(4, torch.float64)
        grid = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
        for method in self.methods:
            path = self.sample(
                solver, x, method, step_size=0.1, time_grid=grid, return_intermediates=True
            )
            assert path.shape == (4, *x.shape), method
            self.assert_close(path[0], x, 0.0)
            end = self.sample(solver, x, method, step_size=0.1, time_grid=grid)
            self.assert_close(path[-1], end, 1e-12)
            # the state at 0.5 equals a solve that stops at 0.5 with the same steps
            half = self.sample(solver, x, method, step_size=0.1, time_grid=grid[:3])
            self.assert_close(path[2], half, 1e-12)

    def test_unknown_method_is_rejected(self, solver):
        if None in self.methods:
            pytest.skip("the solver has no method argument")
        x = self.make_x_init(2, torch.float32)
        with pytest.raises(ValueError, match="method"):
            self.sample(solver, x, "no-such-method", step_size=0.1)

    @pytest.mark.parametrize(
        ("grid", "match"),
        [([0.0, 0.6, 0.4, 1.0], "time_grid"), ([0.0, 1.5], "time_grid"), ([0.5], "time_grid")],
    )
    def test_bad_time_grid_is_rejected(self, solver, grid, match):
        x = self.make_x_init(2, torch.float32)
        with pytest.raises(ValueError, match=match):
            self.sample(solver, x, next(iter(self.methods)), step_size=0.1, time_grid=grid)


class ReversibleSolverTests(SolverTests):
    """``SolverTests`` plus a round trip: integrating 0 -> 1 then 1 -> 0 returns the start (ODEs)."""

    def test_reverse_grid_round_trip(self, solver):
        x = self.make_x_init(4, torch.float64)
        method = max(self.methods, key=self.methods.get)
        forward = self.sample(solver, x, method, step_size=0.01)
        back = self.sample(solver, forward, method, step_size=0.01, time_grid=[1.0, 0.0])
        self.assert_close(back, x, self.round_trip_atol)
