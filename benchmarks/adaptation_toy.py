"""The 2-D picture of docs/fm-core/adaptation.md: Adjoint Matching on a Gaussian base.

Base N(0, I) (``GaussianFlow``), reward b.x - x'Qx/2, so the tilted target is
N((I + Q)^-1 b, (I + Q)^-1). Trains the piecewise-affine control of the fm-core test (20 SDE
steps, 100 Adam steps) and plots base samples, fine-tuned ODE samples and the target's 1- and
2-sigma ellipses; also plots the memoryless SDE's variance deficit against the step count.

    python benchmarks/adaptation_toy.py docs/images/adaptation-gaussian.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "packages/fm-core/tests/adaptation"))
from test_adjoint_matching import AffineControl

from fm_core import CondOTScheduler, ODESolver
from fm_core.adaptation import AdjointMatchingLoss, lean_adjoint, memoryless_sample
from fm_core.testing import GaussianFlow

F64 = torch.float64


def main(out: str) -> None:
    torch.manual_seed(0)
    sch = CondOTScheduler()
    base = GaussianFlow(torch.zeros(2, dtype=F64), 1.0).double().requires_grad_(False)
    b = torch.tensor([1.0, -0.5], dtype=F64)
    Q = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    cov = torch.linalg.inv(torch.eye(2, dtype=F64) + Q)
    mean = cov @ b
    grid = torch.linspace(0, 1, 21, dtype=F64)
    fine = AffineControl(base, 21, 2)
    opt = torch.optim.Adam(fine.parameters(), lr=0.05)
    lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100)
    loss_fn = AdjointMatchingLoss(sch)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        x0 = torch.randn(256, 2, dtype=F64, generator=g)
        traj = memoryless_sample(fine, x0, sch, grid, generator=g)
        w = lean_adjoint(base, traj, grid, lambda x: x @ b - 0.5 * ((x @ Q) * x).sum(-1))
        loss = loss_fn.trajectory_loss(fine, base, traj, w, grid, num_times=10, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
        losses.append(loss.item())
    x0 = torch.randn(2000, 2, dtype=F64, generator=g)
    with torch.no_grad():
        xb = ODESolver(base).sample(x0, step_size=0.02, method="midpoint")
        xf = ODESolver(fine).sample(x0, step_size=0.02, method="midpoint")
    print("fine-tuned mean", xf.mean(0).tolist(), "target", mean.tolist())
    print("fine-tuned cov", torch.cov(xf.T).tolist(), "target", cov.tolist())

    fig, ax = plt.subplots(1, 3, figsize=(13, 4.2))
    ax[0].scatter(*xb.T, s=2, alpha=0.3, label="base N(0, I)")
    ax[0].scatter(*xf.T, s=2, alpha=0.3, label="fine-tuned (ODE)")
    ang = np.linspace(0, 2 * np.pi, 200)
    ev, evec = np.linalg.eigh(cov.numpy())
    for k in (1, 2):
        ell = (evec * np.sqrt(ev)) @ np.stack([np.cos(ang), np.sin(ang)]) * k
        ax[0].plot(ell[0] + mean[0].item(), ell[1] + mean[1].item(), "k", lw=1)
    ax[0].set_title("tilted target: 1 and 2 sigma (black)")
    ax[0].legend(markerscale=5, loc="lower left")
    ax[0].set_aspect("equal")
    ax[1].plot(losses)
    ax[1].set_title("adjoint-matching loss (floor: Var[w | X_t])")
    ax[1].set_xlabel("Adam step")
    # memoryless SDE of N(0,I) -> N(mu, 0.25 I): variance deficit at t = 1 vs steps
    flow = GaussianFlow(torch.tensor([1.0, -2.0], dtype=F64), 0.5).double()
    ks, dev = [10, 20, 40, 80, 160], []
    z = torch.randn(20000, 2, dtype=F64, generator=g)
    for k in ks:
        x = memoryless_sample(flow, z, sch, torch.linspace(0, 1, k + 1, dtype=F64), generator=g,
                              return_intermediates=False)  # fmt: skip
        dev.append(0.25 - x.var(0).mean().item())
    ax[2].loglog(ks, dev, "o-", label="0.25 - Var[X_1]")
    ax[2].loglog(ks, [dev[0] * ks[0] / k for k in ks], "k--", label="slope -1")
    ax[2].set_title("memoryless SDE: variance deficit at t = 1")
    ax[2].set_xlabel("steps")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print("deficits", dict(zip(ks, dev, strict=True)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "adaptation-gaussian.png")
