"""EulerMaruyamaSolver against the Gaussian closed form; the Karras grid."""

import pytest
import torch

from fm_core.path import AffineProbPath, CondOTProbPath
from fm_core.path.scheduler import CosineScheduler
from fm_core.solver import ODESolver
from fm_core.solver.karras import karras_time_grid
from fm_core.solver.stochastic import EulerMaruyamaSolver
from fm_core.testing.solver import GaussianFlow, SolverTests

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)


class TestEulerMaruyamaShared(SolverTests):
    methods = {"euler_maruyama": 1}  # noqa: RUF012

    @pytest.fixture
    def solver(self):
        return EulerMaruyamaSolver(GaussianFlow(MU, 0.5), CondOTProbPath())

    def make_x_init(self, batch_size, dtype):
        return torch.randn(batch_size, 2, generator=torch.Generator().manual_seed(0)).to(dtype)

    def test_intermediates_at_grid_times(self, solver):
        x = self.make_x_init(4, torch.float64)
        path = solver.sample(x, 0.1, time_grid=[0.0, 0.3, 1.0], return_intermediates=True,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert path.shape == (3, 4, 2) and torch.equal(path[0], x)


def test_noise_scale_zero_is_the_euler_ode():
    flow = GaussianFlow(MU, 0.5)
    x = torch.randn(8, 2, dtype=torch.float64)
    sde = EulerMaruyamaSolver(flow, CondOTProbPath()).sample(x, 0.05, noise_scale=0.0)
    ode = ODESolver(flow).sample(x, 0.05, method="euler")
    torch.testing.assert_close(sde, ode, rtol=0, atol=1e-14)


@pytest.mark.parametrize("noise_scale", [0.5, 1.5])
def test_sde_keeps_the_target_marginal(noise_scale):
    flow = GaussianFlow(MU, 0.5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        out = EulerMaruyamaSolver(flow, CondOTProbPath()).sample(
            x, 0.01, noise_scale=noise_scale, generator=gen
        )
    # N(mu, 0.25 I): standard errors are 0.0035 (mean) and ~0.0025 (std)
    torch.testing.assert_close(out.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(out.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.02,
                               rtol=0)  # fmt: skip


def test_sde_rejects_bad_input():
    flow = GaussianFlow(MU, 0.5)
    with pytest.raises(TypeError, match="path must be an AffineProbPath"):
        EulerMaruyamaSolver(flow, object())
    solver = EulerMaruyamaSolver(flow, AffineProbPath(CosineScheduler()))
    x = torch.randn(2, 2)
    with pytest.raises(ValueError, match="noise_scale must be"):
        solver.sample(x, 0.1, noise_scale=-1.0)
    with pytest.raises(ValueError, match="time_grid must be increasing"):
        solver.sample(x, 0.1, time_grid=[1.0, 0.0])
    with pytest.raises(ValueError, match="step_size is required"):
        solver.sample(x, None)


def test_karras_grid():
    grid = karras_time_grid(10)
    assert grid.shape == (11,) and grid[0] == 0 and grid[-1] == 1
    assert (grid.diff() > 0).all()
    # CondOT: t = 1 / (1 + sigma); the last non-trivial time is sigma_min
    assert grid[-2].item() == pytest.approx(1 / 1.002, rel=1e-6)
    # steps shrink towards the data
    assert grid.diff()[-2] < grid.diff()[2]
    g2 = karras_time_grid(10, scheduler=CosineScheduler(), start_at_zero=False, dtype=torch.float64)
    assert g2[0] > 0 and g2.dtype == torch.float64
    with pytest.raises(ValueError, match="num_steps"):
        karras_time_grid(0)
    # used as a time grid with heun2, it integrates the Gaussian flow accurately
    flow = GaussianFlow(MU, 0.5)
    x = torch.randn(8, 2, dtype=torch.float64)
    out = ODESolver(flow).sample(x, None, method="heun2",
                                 time_grid=karras_time_grid(40, dtype=torch.float64))  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(out, flow.flow(x, 1.0), atol=5e-3, rtol=0)
