"""ODESolver against the closed-form Gaussian flow: orders, likelihoods, gradients, errors."""

import math

import pytest
import torch

from fm_core.solver import ODESolver
from fm_core.testing.ode import ConvergenceOrderTests, LikelihoodTests
from fm_core.testing.solver import GaussianFlow, ReversibleSolverTests

MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
S = 0.5


def make_flow(shape=(3,), dtype=torch.float64):
    mu = torch.linspace(-1.0, 1.5, math.prod(shape), dtype=dtype).reshape(shape)
    return GaussianFlow(mu, S)


def std_normal_log_prob(x):
    return -0.5 * (x**2).flatten(1).sum(-1) - 0.5 * x[0].numel() * math.log(2 * math.pi)


class TestODESolverShared(ReversibleSolverTests):
    methods = {"euler": 1, "midpoint": 2, "heun2": 2, "rk4": 4}  # noqa: RUF012

    @pytest.fixture
    def solver(self):
        return ODESolver(make_flow())

    def make_x_init(self, batch_size, dtype):
        return torch.randn(batch_size, 3, generator=torch.Generator().manual_seed(0)).to(dtype)


# ----------------------------------------------------------------------------- convergence order
class TestOrderGaussianFlow(ConvergenceOrderTests):
    """The shared order suite on the Gaussian flow (a linear ODE with a closed-form flow map)."""

    # The explicit midpoint rule is superconvergent (slope 3.0) on this linear ODE: its h^2 error
    # term cancels for u = a(t) x + b(t) with this a, b. The nonlinear suite below pins 2.
    cases = [  # noqa: RUF012
        ("euler", [8, 16, 32, 64], None, {}),
        ("midpoint", [8, 16, 32, 64], 3, {}),
        ("heun2", [8, 16, 32, 64], None, {}),
        ("rk4", [4, 8, 16, 32], None, {}),
    ]

    @pytest.fixture
    def solver(self):
        return ODESolver(GaussianFlow(MU, 2.0))

    def problem(self):
        flow = GaussianFlow(MU, 2.0)
        x_0 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return x_0, flow.flow(x_0, 1.0)


class TestOrderNonlinear(ConvergenceOrderTests):
    """u_t(x) = cos(t) x^2 has the closed form x_1 = x_0 / (1 - x_0 sin 1)."""

    @pytest.fixture
    def solver(self):
        return ODESolver(lambda x, t: torch.cos(t) * x**2)

    def problem(self):
        x_0 = torch.rand(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        x_0 = 1.5 * x_0 - 1
        return x_0, x_0 / (1 - x_0 * math.sin(1.0))


class TestLikelihoodGaussianFlow(LikelihoodTests):
    """The shared likelihood suite: N(0, I) pushed to N(mu, s^2 I) by the exact CondOT field."""

    @pytest.fixture
    def solver(self):
        return ODESolver(GaussianFlow(MU, 0.5).double())

    def likelihood_problem(self):
        flow = GaussianFlow(MU, 0.5).double()
        x_0 = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        log_p0 = lambda x: -0.5 * (x**2).sum(-1) - 1.5 * math.log(2 * math.pi)
        return x_0, log_p0, lambda x: flow.log_prob(x, 1.0).detach()


@pytest.mark.parametrize("grid", [None, [0.0, 0.25, 1.0]])
def test_dopri5_matches_the_flow_map(grid):
    flow = make_flow()
    solver = ODESolver(flow)
    x_0 = torch.randn(16, 3, dtype=torch.float64)
    out = solver.sample(x_0, None, method="dopri5", atol=1e-9, rtol=1e-9, time_grid=grid,
                        return_intermediates=True)  # fmt: skip
    with torch.no_grad():
        times = grid or [0.0, 1.0]
        for i, t in enumerate(times):
            torch.testing.assert_close(out[i], flow.flow(x_0, t), atol=1e-7, rtol=0)
    assert solver.last_nfe > 6


def test_dopri5_tolerance_controls_error_and_nfe():
    flow = make_flow()
    solver = ODESolver(flow)
    x_0 = torch.randn(16, 3, dtype=torch.float64)
    with torch.no_grad():
        exact = flow.flow(x_0, 1.0)
    errs, nfes = [], []
    for tol in (1e-3, 1e-6, 1e-9):
        errs.append(
            (solver.sample(x_0, None, method="dopri5", atol=tol, rtol=tol) - exact).abs().max()
        )
        nfes.append(solver.last_nfe)
    assert errs[0] > errs[1] > errs[2] and nfes[0] < nfes[1] < nfes[2]


def test_reverse_integration_recovers_the_source():
    flow = make_flow()
    x_0 = torch.randn(8, 3, dtype=torch.float64)
    with torch.no_grad():
        x_1 = flow.flow(x_0, 1.0)
    back = ODESolver(flow).sample(x_1, 0.05, method="rk4", time_grid=[1.0, 0.0])
    torch.testing.assert_close(back, x_0, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_exact_likelihood_matches_closed_form(dtype, shape):
    flow = make_flow(shape, torch.float64)
    x_1 = flow.flow(torch.randn(6, *shape, dtype=torch.float64), 1.0).detach()
    with torch.no_grad():
        want = flow.log_prob(x_1, 1.0)
    flow = flow.to(dtype)
    solver = ODESolver(flow)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    x_0, log_p1 = solver.compute_likelihood(x_1.to(dtype), std_normal_log_prob, None,
                                            method="dopri5", atol=tol, rtol=tol,
                                            exact_divergence=True)  # fmt: skip
    assert log_p1.shape == (6,) and log_p1.dtype == dtype and x_0.shape == x_1.shape
    torch.testing.assert_close(log_p1.double(), want, atol=1e-3, rtol=0)
    if dtype == torch.float64:
        torch.testing.assert_close(log_p1, want, atol=1e-6, rtol=0)
    # fixed steps converge to the same value
    _, lp = solver.compute_likelihood(x_1.to(dtype), std_normal_log_prob, 0.05, method="rk4",
                                      exact_divergence=True)  # fmt: skip
    torch.testing.assert_close(lp.double(), want, atol=1e-3, rtol=0)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_mean_of_many_probes_matches_exact(probe):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    net = net.double()
    solver = ODESolver(lambda x, t: net(x) * (1 + t))
    x_1 = torch.randn(5, 4, dtype=torch.float64)
    kw = {"step_size": 0.25, "method": "midpoint"}
    _, exact = solver.compute_likelihood(x_1, std_normal_log_prob, exact_divergence=True, **kw)
    gen = torch.Generator().manual_seed(0)
    _, est = solver.compute_likelihood(x_1, std_normal_log_prob, divergence="hutchinson",
                                       num_probes=4000, probe=probe, generator=gen, **kw)  # fmt: skip
    torch.testing.assert_close(est, exact, atol=0.05, rtol=0)
    # one probe per call, averaged over calls, also converges (the reference's estimator)
    _, one = solver.compute_likelihood(x_1, std_normal_log_prob, **kw)
    assert one.shape == (5,) and not torch.equal(one, exact)


def test_hutchinson_is_exact_for_a_diagonal_jacobian_with_rademacher():
    flow = make_flow((3,))
    x_1 = torch.randn(4, 3, dtype=torch.float64)
    solver = ODESolver(flow)
    kw = {"step_size": 0.1, "method": "rk4"}
    _, exact = solver.compute_likelihood(x_1, std_normal_log_prob, exact_divergence=True, **kw)
    _, est = solver.compute_likelihood(x_1, std_normal_log_prob, **kw)  # z^T (c I) z = c D
    torch.testing.assert_close(est, exact)


def test_sample_with_likelihood_matches_compute_likelihood():
    flow = make_flow((2, 2, 2))
    solver = ODESolver(flow)
    x_0 = torch.randn(5, 2, 2, 2, dtype=torch.float64)
    x_1, log_p1 = solver.sample_with_likelihood(x_0, std_normal_log_prob, None, method="dopri5",
                                                atol=1e-9, rtol=1e-9)  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(x_1, flow.flow(x_0, 1.0), atol=1e-7, rtol=0)
        torch.testing.assert_close(log_p1, flow.log_prob(x_1, 1.0), atol=1e-6, rtol=0)


def test_likelihood_intermediates_and_nfe():
    solver = ODESolver(make_flow())
    x_1 = torch.randn(4, 3, dtype=torch.float64)
    xs, _ = solver.compute_likelihood(x_1, std_normal_log_prob, 0.1, method="heun2",
                                      time_grid=[1.0, 0.5, 0.0], return_intermediates=True)  # fmt: skip
    assert xs.shape == (3, 4, 3) and torch.equal(xs[0], x_1)
    assert solver.last_nfe == 20


# ----------------------------------------------------------------------------- gradients
def _fd_check(fn, params, eps=1e-6, atol=1e-6):
    loss = fn()
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads, strict=True):
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            with torch.no_grad():
                up = fn().item()
            flat[i] = old - eps
            with torch.no_grad():
                down = fn().item()
            flat[i] = old
            assert abs((up - down) / (2 * eps) - g.view(-1)[i].item()) < atol, (p.shape, i)


@pytest.mark.parametrize("checkpoint_steps", [True, False])
def test_gradients_through_sample_match_finite_differences(checkpoint_steps):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    net = net.double()
    solver = ODESolver(lambda x, t: net(torch.cat([x, t.expand(x.shape[0], 1)], 1)))
    x_0 = torch.randn(4, 2, dtype=torch.float64)

    def loss():
        out = solver.sample(x_0, 0.25, method="midpoint", enable_grad=True,
                            checkpoint_steps=checkpoint_steps)  # fmt: skip
        return (out**2).sum()

    _fd_check(loss, [net[0].weight, net[2].bias])


@pytest.mark.parametrize("method", ["euler", "dopri5"])
def test_gradients_through_likelihood_match_finite_differences(method):
    flow = make_flow((2,))
    solver = ODESolver(flow)
    x_1 = torch.randn(4, 2, dtype=torch.float64)
    kw = (
        {"step_size": 0.1}
        if method == "euler"
        else {"step_size": None, "atol": 1e-10, "rtol": 1e-10}
    )

    def loss():
        _, lp = solver.compute_likelihood(x_1, std_normal_log_prob, method=method,
                                          exact_divergence=True, enable_grad=True, **kw)  # fmt: skip
        return lp.mean()

    _fd_check(loss, [flow.mu, flow.log_s], atol=1e-5)
    if method == "dopri5":  # the converged gradient is the closed form's
        lp = flow.log_prob(x_1, 1.0).mean()
        g_exact = torch.autograd.grad(lp, [flow.mu, flow.log_s])
        g = torch.autograd.grad(loss(), [flow.mu, flow.log_s])
        for a, b in zip(g, g_exact, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_likelihood_gradients_do_not_checkpoint_by_default():
    # Checkpointing a step whose divergence calls autograd.grad recomputes the step in the forward
    # pass already (midpoint, 10 steps: 20 model calls became 50+); the default is off, and the
    # opt-in gives the same gradients.
    flow = make_flow((2,))
    calls = []
    solver = ODESolver(lambda x, t: calls.append(1) or flow(x, t))
    x_1 = torch.randn(4, 2, dtype=torch.float64)
    grads, counts = [], []
    for kw in ({}, {"checkpoint_steps": True}):
        calls.clear()
        _, lp = solver.compute_likelihood(x_1, std_normal_log_prob, 0.1, method="midpoint",
                                          exact_divergence=True, enable_grad=True, **kw)  # fmt: skip
        counts.append(len(calls))
        grads.append(torch.autograd.grad(lp.mean(), [flow.mu, flow.log_s]))
    assert counts[0] == 20 and solver.last_nfe > 20  # the opt-in's forward recomputes
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_maximum_likelihood_training_moves_towards_the_target():
    flow = GaussianFlow(torch.zeros(2, dtype=torch.float64), 1.0)
    target = GaussianFlow(torch.tensor([1.0, -1.0], dtype=torch.float64), 0.5)
    data = target.flow(torch.randn(256, 2, dtype=torch.float64), 1.0).detach()
    opt = torch.optim.Adam(flow.parameters(), lr=0.1)
    solver = ODESolver(flow)
    for _ in range(30):
        _, lp = solver.compute_likelihood(data, std_normal_log_prob, 0.25, method="midpoint",
                                          exact_divergence=True, enable_grad=True)  # fmt: skip
        opt.zero_grad()
        (-lp.mean()).backward()
        opt.step()
    assert (flow.mu.detach() - target.mu.detach()).abs().max() < 0.3
    assert abs(flow.log_s.exp().item() - 0.5) < 0.15


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_before_any_step():
    calls = []

    def model(x, t):
        calls.append(1)
        return x[:, :2]

    solver = ODESolver(model)
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="velocity_model must return a tensor of the shape of x"):
        solver.sample(x, 0.1)
    assert len(calls) == 1
    good = ODESolver(lambda x, t: -x)
    with pytest.raises(ValueError, match="method must be one of"):
        good.sample(x, 0.1, method="eulr")
    with pytest.raises(ValueError, match="step_size is required"):
        good.sample(x, None)
    with pytest.raises(ValueError, match="step_size must be None"):
        good.sample(x, 0.1, method="dopri5")
    with pytest.raises(ValueError, match="step_size must be a positive"):
        good.sample(x, -0.1)
    with pytest.raises(ValueError, match="time_grid must be strictly"):
        good.sample(x, 0.1, time_grid=[0.0, 0.5, 0.2])
    with pytest.raises(ValueError, match=r"time_grid must lie in \[0, 1\]"):
        good.sample(x, 0.1, time_grid=[0.0, 1.2])
    with pytest.raises(TypeError, match="x_init must be a floating-point"):
        good.sample(torch.ones(3, 2, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match=r"time_grid must start at 1\.0 and end at 0\.0"):
        good.compute_likelihood(x, std_normal_log_prob, 0.1, time_grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="divergence must be"):
        good.compute_likelihood(x, std_normal_log_prob, 0.1, divergence="approx")
    with pytest.raises(ValueError, match="probe must be"):
        good.compute_likelihood(x, std_normal_log_prob, 0.1, probe="uniform")
    with pytest.raises(ValueError, match="num_probes must be"):
        good.compute_likelihood(x, std_normal_log_prob, 0.1, num_probes=0)
    with pytest.raises(TypeError, match="log_p0 must be callable"):
        good.compute_likelihood(x, None, 0.1)
    with pytest.raises(ValueError, match="atol must be a positive"):
        good.sample(x, None, method="dopri5", atol=0.0)
    with pytest.raises(TypeError, match="velocity_model must return a Tensor"):
        ODESolver(lambda x, t: (x,)).sample(x, 0.1)


def test_torchdiffeq_serves_other_methods():
    # torchdiffeq is in fm-core's test extras, so this runs in every test session.
    flow = make_flow()
    solver = ODESolver(flow)
    x_0 = torch.randn(4, 3, dtype=torch.float64)
    out = solver.sample(x_0, None, method="bosh3", atol=1e-8, rtol=1e-8)
    with torch.no_grad():  # bosh3 in torchdiffeq reaches ~1e-6 here whatever the tolerance
        torch.testing.assert_close(out, flow.flow(x_0, 1.0), atol=1e-4, rtol=0)
    assert solver.last_nfe > 0


def test_model_extras_are_forwarded():
    seen = {}

    def model(x, t, label):
        seen["label"] = label
        return torch.zeros_like(x)

    ODESolver(model).sample(torch.zeros(2, 2), 0.5, label=3)
    assert seen["label"] == 3


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_likelihood_of_a_field_that_does_not_depend_on_x(divergence):
    # u = 0 (or any u independent of x) has divergence 0; autograd.grad used to raise
    # "element 0 of tensors does not require grad".
    solver = ODESolver(lambda x, t: torch.zeros_like(x))
    x_1 = torch.randn(3, 2, dtype=torch.float64)
    x_0, log_p1 = solver.compute_likelihood(x_1, std_normal_log_prob, 0.25, divergence=divergence)
    torch.testing.assert_close(x_0, x_1)
    torch.testing.assert_close(log_p1, std_normal_log_prob(x_1))


@pytest.mark.parametrize("estimator", ["exact", "hutchinson"])
def test_divergence_estimators_refuse_a_u_without_a_graph(estimator):
    from fm_core.solver import ExactDivergence, HutchinsonDivergence

    x = torch.randn(3, 2, requires_grad=True)
    div = ExactDivergence(x) if estimator == "exact" else HutchinsonDivergence(x, 2)
    with pytest.raises(ValueError, match="u must be computed from x with autograd on"):
        div((2 * x).detach(), x)


# ----------------------------------------------------------------------------- gradient modes
def test_adjoint_with_a_parameterless_model_gives_the_input_gradient_of_backprop():
    field = lambda x, t: torch.sin(x) * (1 + t)
    grads = []
    for mode in ("backprop", "adjoint"):
        x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        x.requires_grad_(True)
        out = ODESolver(field).sample(x, 0.05, method="rk4", enable_grad=True, gradient=mode,
                                      time_grid=[0.0, 0.5, 1.0], return_intermediates=True)  # fmt: skip
        (g,) = torch.autograd.grad((out[1] * 2 + out[2] ** 2).sum(), x)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 5, 16, 26])
def test_adjoint_recomputes_segments_and_matches_backprop(steps):
    # The forward solve keeps every ceil(sqrt(N))-th state (and the last segment); the backward
    # walk recomputes the other states of a segment from its first. Any step count, with
    # intermediates falling inside segments, gives backprop's gradients.
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    net = net.double()
    calls = []

    def model(x, t):
        calls.append(1)
        return net(x) * (1 + t)

    grid = [0.0, 0.3, 0.7, 1.0]
    grads, counts = [], []
    for mode in ("backprop", "adjoint"):
        calls.clear()
        x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        x.requires_grad_(True)
        out = ODESolver(model).sample(x, 1.0 / steps, method="midpoint", enable_grad=True,
                                      gradient=mode, time_grid=grid, return_intermediates=True)  # fmt: skip
        loss = (out[1:] ** 2 * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)).sum()
        grads.append(torch.autograd.grad(loss, [x, *net.parameters()]))
        counts.append(len(calls))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # backprop evaluates each step once; the adjoint once forward, once backward, and recomputes
    # some states (at least one: the grid has 3 or more steps), never a step twice
    assert 2 * counts[0] < counts[1] < 3 * counts[0], counts


def test_adjoint_gradients_reach_tensor_extras():
    model = lambda x, t, scale: x * scale
    grads = []
    for mode in ("backprop", "adjoint"):
        scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        x = torch.ones(2, 3, dtype=torch.float64)
        out = ODESolver(model).sample(x, 0.1, method="midpoint", enable_grad=True,
                                      gradient=mode, scale=scale)  # fmt: skip
        grads.append(torch.autograd.grad(out.sum(), scale)[0])
    torch.testing.assert_close(grads[1], grads[0])
    assert grads[0].item() > 0  # d/ds of 6 exp(s) is not zero


def test_adjoint_finds_the_parameters_a_function_closes_over():
    net = torch.nn.Linear(3, 3).double()
    grads = []
    for mode in ("backprop", "adjoint"):
        x = torch.ones(2, 3, dtype=torch.float64)
        out = ODESolver(lambda x, t: net(x)).sample(x, 0.1, enable_grad=True, gradient=mode)
        # the output's graph is the adjoint's one node, not one per step
        if mode == "adjoint":
            assert type(out.grad_fn).__name__ == "_AdjointSolveBackward"
        grads.append(torch.autograd.grad(out.square().sum(), list(net.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_a_model_output_on_another_device_is_a_clear_error():
    solver = ODESolver(lambda x, t: torch.zeros(x.shape, device="meta"))
    with pytest.raises(ValueError, match="velocity_model returned a tensor on meta for x on cpu"):
        solver.sample(torch.zeros(2, 3), 0.5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "approx"}, "Divergence.kind must be"),
        ({"num_probes": 0}, "Divergence.num_probes must be a positive int"),
        ({"num_probes": True}, "Divergence.num_probes must be a positive int"),
        ({"probe": "uniform"}, "Divergence.probe must be"),
        ({"chunk_size": 0}, "Divergence.chunk_size must be None or a positive int"),
    ],
)
def test_a_bad_divergence_object_fails_at_construction(fields, message):
    from fm_core.solver import Divergence

    with pytest.raises(ValueError, match=message):
        Divergence(**fields)
