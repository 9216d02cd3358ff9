"""A small flow trained on a von Mises-Fisher mixture on S^2 beats the uniform density."""

from __future__ import annotations

import math

import torch

from fm_core.path.scheduler import CondOTScheduler
from fm_riemann import (
    GeodesicProbPath,
    ProjectToTangent,
    RiemannianFlowMatchingLoss,
    RiemannianODESolver,
    Sphere,
)
from fm_riemann.testing import TimeMLP, sample_vmf_mixture


def test_trained_flow_beats_uniform_and_stays_on_the_sphere():
    # One intra-op thread: tiny matmuls on a shared 2-core machine run ~10x slower with more.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_and_check()
    finally:
        torch.set_num_threads(threads)


def _train_and_check():
    torch.manual_seed(0)
    sphere = Sphere()
    path = GeodesicProbPath(CondOTScheduler(), sphere)
    model = ProjectToTangent(TimeMLP(), sphere)
    loss_fn = RiemannianFlowMatchingLoss(path)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        x_1 = sample_vmf_mixture(256)
        x_0 = sphere.random_uniform(256, 3)
        s = path.sample(x_0, x_1, torch.rand(256))
        loss = loss_fn(model(x=s.x_t, t=s.t), s)
        opt.zero_grad()
        loss.backward()
        opt.step()

    solver = RiemannianODESolver(sphere, model)
    test = sample_vmf_mixture(256)
    log_uniform = -math.log(4 * math.pi)
    _, logp = solver.compute_likelihood(
        test,
        lambda x: torch.full(x.shape[:1], log_uniform),
        0.05,
        method="midpoint",
        exact_divergence=True,
    )
    nll = -logp.mean().item()
    assert nll < -log_uniform - 0.5, nll  # uniform NLL = log 4π ≈ 2.53

    x = solver.sample(sphere.random_uniform(64, 3), 1e-3, method="euler")
    assert x.dtype == torch.float32
    assert (x.norm(dim=-1) - 1).abs().max().item() <= 1e-5
