"""Train a small flow on a von Mises-Fisher mixture on S^2 and draw docs/images/riemann-sphere.png.

Run from the repository root: python packages/fm-riemann/examples/sphere_vmf.py
(about 5 s on one CPU core). Prints the test NLL of the flow and of the uniform density.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
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


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    sphere = Sphere()
    path = GeodesicProbPath(CondOTScheduler(), sphere)
    model = ProjectToTangent(TimeMLP(), sphere)
    loss_fn = RiemannianFlowMatchingLoss(path)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(800):
        x_1 = sample_vmf_mixture(256)
        s = path.sample(sphere.random_uniform(256, 3), x_1, torch.rand(256))
        loss = loss_fn(model(x=s.x_t, t=s.t), s)
        opt.zero_grad()
        loss.backward()
        opt.step()

    solver = RiemannianODESolver(sphere, model)
    log_uniform = -math.log(4 * math.pi)
    _, logp = solver.compute_likelihood(
        sample_vmf_mixture(512),
        lambda x: torch.full(x.shape[:1], log_uniform),
        0.05,
        method="midpoint",
        exact_divergence=True,
    )
    print(f"test NLL: flow {-logp.mean():.3f}, uniform {-log_uniform:.3f} (nats)")

    x_0 = sphere.random_uniform(1500, 3)
    traj = solver.sample(
        x_0, 0.01, method="midpoint", time_grid=torch.linspace(0, 1, 21), return_intermediates=True
    )
    print(f"max | |x| - 1 | after sampling: {(traj[-1].norm(dim=-1) - 1).abs().max():.2e}")

    def lon_lat(p: torch.Tensor):
        return torch.atan2(p[..., 1], p[..., 0]).numpy(), torch.asin(p[..., 2].clamp(-1, 1)).numpy()

    fig = plt.figure(figsize=(13, 3.6))
    panels = [(x_0, "source: uniform on $S^2$"), (traj[-1], "flow samples at t = 1 (+ paths)"),
              (sample_vmf_mixture(1500), "data: vMF mixture")]  # fmt: skip
    for i, (pts, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1, projection="mollweide")
        lon, lat = lon_lat(pts)
        ax.scatter(lon, lat, s=2, alpha=0.6, c="tab:blue")
        if i == 1:
            for j in range(30):
                lo, la = lon_lat(traj[:, j])
                if abs(lo[1:] - lo[:-1]).max() < 3:  # skip paths crossing the map's seam
                    ax.plot(lo, la, c="tab:orange", lw=0.8)
        ax.set_title(title)
        ax.set_xticklabels([])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(__file__).resolve().parents[3] / "docs" / "images" / "riemann-sphere.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
