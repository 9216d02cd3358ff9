"""On a GPU, training and solver steps never synchronise with the host (issue 12 §1).

``torch.cuda.set_sync_debug_mode("error")`` turns every device-to-host synchronisation into an
exception. Runs only where CUDA exists (``gpu`` marker); CPU sessions cover the same code paths
through the compile-contract tests, where a value read would be a graph break.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fm_core import CondOTProbPath, FlowMatchingLoss, ODESolver
from fm_discrete import MixtureDiscreteProbPath, MixturePathGeneralizedKL
from fm_discrete.solver.step import mixture_euler_step_torch
from fm_riemann import GeodesicProbPath, RiemannianFlowMatchingLoss, Sphere

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def no_sync():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    yield
    torch.cuda.set_sync_debug_mode("default")


def test_training_steps_do_not_sync(no_sync):
    dev = torch.device("cuda")
    mlp = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 3)).to(dev)
    path = CondOTProbPath()
    x_0, x_1, t = (torch.randn(8, 3, device=dev), torch.randn(8, 3, device=dev),
                   torch.rand(8, device=dev))  # fmt: skip
    s = path.sample(x_0, x_1, t)
    loss = FlowMatchingLoss(path, backend="torch")(
        mlp(torch.cat([s.x_t, s.t[:, None]], -1)), x_0, x_1, t
    )
    loss.backward()

    sphere_path = GeodesicProbPath(path.scheduler, Sphere())
    p = nn.functional.normalize(torch.randn(8, 3, device=dev), dim=-1)
    s = sphere_path.sample(p, p.flip(0), t)
    v = mlp(torch.cat([s.x_t, s.t[:, None]], -1))
    RiemannianFlowMatchingLoss(sphere_path)(v, s).backward()

    dpath = MixtureDiscreteProbPath(path.scheduler)
    x_1 = torch.randint(0, 9, (8, 5), device=dev)
    ds = dpath.sample(torch.full_like(x_1, 9), x_1, t)
    logits = torch.randn(8, 5, 10, device=dev, requires_grad=True)
    MixturePathGeneralizedKL(dpath, backend="torch")(logits, x_1, ds.x_t, ds.t).backward()


def test_solver_steps_do_not_sync(no_sync):
    dev = torch.device("cuda")
    x = torch.randn(8, 3, device=dev)
    ODESolver(lambda x, t: -x).sample(x, step_size=None, time_grid=[0.0, 0.5])
    scores = torch.randn(16, 10, device=dev)
    jump = torch.full((16,), 0.5, dtype=torch.float64, device=dev)
    mixture_euler_step_torch(scores, torch.zeros(16, dtype=torch.long, device=dev), jump)
