"""Shared suites for ODE solvers: convergence order and likelihoods (Euclidean and Riemannian).

``ConvergenceOrderTests`` regresses log error on log step size and checks the slope against each
method's ``order`` (diffrax's test); ``LikelihoodTests`` checks log-densities against a closed
form, ``sample(return_log_prob=True)`` against ``compute_likelihood`` of the same points, and the
three gradient modes against each other. ``ODESolver`` and ``RiemannianODESolver`` both subclass
them, so both front-ends of the one integrator are held to the same properties.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from fm_core.solver._tableau import TABLEAUX

__all__ = ["ConvergenceOrderTests", "LikelihoodTests"]


class ConvergenceOrderTests:
    """The error at a fixed time falls as $h^p$ for each fixed-step method.

    Provide the ``solver`` fixture and ``problem()`` returning ``(x_0, exact_x_1)`` in float64
    (the solve runs over ``[0, 1]``). Optionally override ``cases``: ``(method, steps, order,
    sample_kwargs)`` with ``order=None`` for the method's own; ``slack`` is the allowed
    ``|slope - order|``.
    """

    cases: list[tuple[str, list[int], int | None, dict]] = [  # noqa: RUF012 - read-only
        ("euler", [8, 16, 32, 64], None, {}),
        ("midpoint", [8, 16, 32, 64], None, {}),
        ("heun2", [8, 16, 32, 64], None, {}),
        ("rk4", [4, 8, 16, 32], None, {}),
    ]
    slack: float = 0.9

    def problem(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def error(self, a: Tensor, b: Tensor) -> float:
        return (a - b).abs().max().item()

    def test_error_falls_at_the_method_order(self, solver):
        x_0, exact = self.problem()
        failures = []
        for method, steps, order, kwargs in self.cases:
            order = TABLEAUX[method].order if order is None else order
            errors = [
                self.error(solver.sample(x_0, 1 / n, method=method, **kwargs), exact) for n in steps
            ]
            assert errors[-1] > 1e-13, (method, errors)  # above float64 noise
            slope = np.polyfit(np.log([1 / n for n in steps]), np.log(errors), 1)[0]
            if abs(slope - order) >= self.slack:
                failures.append((method, kwargs, order, slope))
        assert not failures, failures


class LikelihoodTests:
    """Log-densities of an ODE solver (``compute_likelihood``, ``sample(return_log_prob=True)``).

    Provide the ``solver`` fixture (its model an ``nn.Module`` with parameters, for the gradient
    test) and ``likelihood_problem()`` returning ``(x_0, log_p0, exact_log_p1)``: source points
    ``[B, ...]`` in float64, the source log-density, and a callable giving the exact
    $\\log p_1$ of points at $t = 1$, or ``None`` where no closed form is known.
    Optionally ``likelihood_kwargs`` (e.g. ``{"method": "rk4"}``) and ``atol``.
    """

    likelihood_kwargs: dict = {"method": "rk4"}  # noqa: RUF012 - read-only
    atol: float = 1e-5

    def likelihood_problem(self):
        raise NotImplementedError

    def test_log_prob_of_samples_matches_the_closed_form(self, solver):
        x_0, log_p0, exact = self.likelihood_problem()
        kw = self.likelihood_kwargs
        x_1, log_p1 = solver.sample(x_0, 0.02, return_log_prob=True, log_p0=log_p0, **kw)
        if exact is not None:
            torch.testing.assert_close(log_p1, exact(x_1), atol=self.atol, rtol=0)
        # compute_likelihood of the same points, integrating back: the same values
        _, back = solver.compute_likelihood(x_1, log_p0, 0.02, exact_divergence=True, **kw)
        torch.testing.assert_close(back, log_p1, atol=self.atol, rtol=0)
        lp = solver.log_prob(x_1, log_p0, 0.02, exact_divergence=True, **kw)
        torch.testing.assert_close(lp, back)

    def test_hutchinson_agrees_with_exact_on_average(self, solver):
        x_0, log_p0, _ = self.likelihood_problem()
        kw = self.likelihood_kwargs
        x_1 = solver.sample(x_0, 0.05, **kw)
        _, exact = solver.compute_likelihood(x_1, log_p0, 0.05, divergence="exact", **kw)
        g = torch.Generator().manual_seed(0)
        _, est = solver.compute_likelihood(
            x_1, log_p0, 0.05, divergence="hutchinson", num_probes=256, generator=g, **kw
        )
        # 256 probes: the estimate's standard deviation is a few percent of |div| scale
        assert (est - exact).abs().max().item() < 0.1 + 0.05 * exact.abs().max().item()

    def test_a_divergence_object_equals_the_keywords(self, solver):
        from fm_core.solver import Divergence

        x_0, log_p0, _ = self.likelihood_problem()
        kw = self.likelihood_kwargs
        x_1 = solver.sample(x_0, 0.1, **kw)
        for keywords, options in (
            ({"divergence": "exact", "divergence_chunk_size": 1}, Divergence(chunk_size=1)),
            (
                {"divergence": "hutchinson", "num_probes": 3, "probe": "gaussian"},
                Divergence("hutchinson", num_probes=3, probe="gaussian"),
            ),
        ):
            got = []
            for arguments in (keywords, {"divergence": options}):
                g = torch.Generator().manual_seed(0)
                _, lp = solver.compute_likelihood(x_1, log_p0, 0.1, generator=g, **arguments, **kw)
                g = torch.Generator().manual_seed(0)
                _, lp_s = solver.sample(x_0, 0.1, return_log_prob=True, log_p0=log_p0,
                                        generator=g, **arguments, **kw)  # fmt: skip
                got.append((lp, lp_s))
            for a, b in zip(*got, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        with pytest.raises(ValueError, match="give num_probes, probe and divergence_chunk_size"):
            solver.compute_likelihood(
                x_1, log_p0, 0.1, divergence=Divergence("hutchinson"), num_probes=4, **kw
            )

    def test_adjoint_gradients_equal_backprop(self, solver):
        x_0, log_p0, _ = self.likelihood_problem()
        params = [p for p in solver.velocity_model.parameters() if p.requires_grad]
        assert params, "the LikelihoodTests model must have parameters"
        grads = {}
        for mode in ("backprop", "checkpoint", "adjoint"):
            x = x_0.clone().requires_grad_(True)
            _, lp = solver.compute_likelihood(
                x, log_p0, 0.1, method="midpoint", exact_divergence=True, enable_grad=True,
                gradient=mode,
            )  # fmt: skip
            out = solver.sample(x, 0.1, method="heun2", enable_grad=True, gradient=mode)
            total = lp.sum() + (out * torch.linspace(0.5, 1.5, out.numel()).view_as(out)).sum()
            grads[mode] = torch.autograd.grad(total, [x, *params])
        for mode in ("checkpoint", "adjoint"):
            for a, b in zip(grads[mode], grads["backprop"], strict=True):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-10)

    def test_adjoint_refuses_an_adaptive_method(self, solver):
        x_0, _, _ = self.likelihood_problem()
        with pytest.raises(ValueError, match="gradient='adjoint' needs a fixed-step method"):
            solver.sample(
                x_0.requires_grad_(True), None, method="dopri5", enable_grad=True,
                gradient="adjoint",
            )  # fmt: skip
        with pytest.raises(ValueError, match="gradient must be one of"):
            solver.sample(x_0, 0.1, gradient="reverse")
