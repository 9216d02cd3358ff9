"""Re-runs of the reference's ``examples/2d_riemannian_flow_matching_flat_torus.ipynb`` and
``..._sphere.ipynb``, at reduced sizes.

Cells reproduced (our code, the notebooks' calls): a checkerboard placed on the manifold
(wrapped onto the torus; pushed onto the sphere by ``expmap`` from the north pole); uniform
source; an MLP velocity wrapped to project onto the tangent space (``projx`` then ``proju``);
``GeodesicProbPath(scheduler=CondOTScheduler(), manifold=manifold)`` and the L2 loss against
``dx_t``; sampling with ``RiemannianODESolver(velocity_model=..., manifold=...)
.sample(x_init, step_size, method='midpoint', return_intermediates=True, time_grid=...)``.
The reference 1.0.10 has no Riemannian likelihood; ours is reported on its own (with the
volume of the manifold as a check: the uniform density integrates to 1).

Run:  python benchmarks/notebooks/riemann_2d.py [--manifold torus|sphere] [--iterations 300]
"""

from __future__ import annotations

import argparse
import math

import torch
from common import LIBS, checkerboard, tail_mean
from torch import nn


class MLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int = 128):
        super().__init__()
        self.main = nn.Sequential(
            nn.Linear(dim + 1, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, dim),
        )  # fmt: skip

    def forward(self, x, t):
        t = t.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1)
        return self.main(torch.cat([x, t], dim=1))


class ProjectToTangent(nn.Module):
    """As the notebooks define it: project the point, then the velocity to its tangent space."""

    def __init__(self, vecfield, manifold):
        super().__init__()
        self.vecfield, self.manifold = vecfield, manifold

    def forward(self, x, t):
        x = self.manifold.projx(x)
        return self.manifold.proju(x, self.vecfield(x, t))


def data(kind: str, manifold, batch_size: int) -> torch.Tensor:
    board = checkerboard(batch_size) * 0.45  # [-2, 2)^2
    if kind == "torus":
        return manifold.projx(board * math.pi / 2)
    flat = torch.cat([board / 2, torch.zeros(batch_size, 1)], -1)  # tangent at the north pole
    pole = torch.zeros(batch_size, 3)
    pole[:, 2] = 1.0
    return manifold.expmap(pole, flat)


def source(kind: str, like: torch.Tensor) -> torch.Tensor:
    if kind == "torus":
        return torch.rand_like(like) * 2 * math.pi
    x = torch.randn_like(like)
    return x / x.norm(dim=-1, keepdim=True)


def run(lib, kind="torus", *, iterations=300, batch_size=1024, seed=0, n_samples=2048,
        step_size=0.01):  # fmt: skip
    torch.manual_seed(seed)
    manifold = lib.FlatTorus() if kind == "torus" else lib.Sphere()
    dim = 2 if kind == "torus" else 3
    vf = ProjectToTangent(MLP(dim), manifold)
    path = lib.GeodesicProbPath(scheduler=lib.CondOTScheduler(), manifold=manifold)
    optim = torch.optim.Adam(vf.parameters(), lr=1e-3)
    losses = []
    for _ in range(iterations):
        x_1 = data(kind, manifold, batch_size)
        x_0 = source(kind, x_1)
        t = torch.rand(x_1.shape[0])
        path_sample = path.sample(t=t, x_0=x_0, x_1=x_1)
        loss = torch.pow(vf(path_sample.x_t, path_sample.t) - path_sample.dx_t, 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())

    class WrappedModel(lib.ModelWrapper):
        def forward(self, x, t, **extras):
            return self.model(x=x, t=t)

    solver = lib.RiemannianODESolver(velocity_model=WrappedModel(vf), manifold=manifold)
    x_init = source(kind, torch.empty(n_samples, dim))
    with torch.no_grad():
        sol = solver.sample(x_init=x_init, step_size=step_size, method="midpoint",
                            return_intermediates=True, time_grid=torch.linspace(0, 1, 5))  # fmt: skip
    return {
        "losses": losses,
        "samples": sol[-1],
        "x_init": x_init,
        "vf": vf,
        "n_times": sol.shape[0],
    }


def coords(kind: str, x: torch.Tensor) -> torch.Tensor:
    """2-D coordinates for a histogram: angles on the torus, (longitude, latitude) on the sphere."""
    if kind == "torus":
        return x - math.pi
    return torch.stack([torch.atan2(x[:, 1], x[:, 0]), torch.asin(x[:, 2].clamp(-1, 1))], -1)


def compare(kind="torus", iterations=300, batch_size=1024, n_samples=2048, step_size=0.01):
    from common import hist2d_tv

    kw = {"iterations": iterations, "batch_size": batch_size, "n_samples": n_samples,
          "step_size": step_size}  # fmt: skip
    ref = run(LIBS["reference"](), kind, **kw)
    our = run(LIBS["ours"](), kind, **kw)
    ref2 = run(LIBS["reference"](), kind, seed=1, **kw)
    tv = lambda a, b: hist2d_tv(coords(kind, a), coords(kind, b), bins=12, lim=math.pi)
    # our likelihood of the trained flow; a uniform density has log p = -log(volume)
    from fm_riemann import FlatTorus, RiemannianODESolver, Sphere

    m = FlatTorus() if kind == "torus" else Sphere()
    log_vol = 2 * math.log(2 * math.pi) if kind == "torus" else math.log(4 * math.pi)
    solver = RiemannianODESolver(m, our["vf"])
    x = our["samples"][:256]
    _, log_p = solver.compute_likelihood(x, lambda z: torch.full(z.shape[:1], -log_vol),
                                         2 * step_size,
                                         method="midpoint", exact_divergence=True)  # fmt: skip
    return {
        "loss_ref": tail_mean(ref["losses"]),
        "loss_ours": tail_mean(our["losses"]),
        "max_loss_diff": max(abs(a - b) for a, b in zip(ref["losses"], our["losses"], strict=True)),
        "tv_ref_vs_ours": tv(ref["samples"], our["samples"]),
        "tv_noise_floor": tv(ref["samples"], ref2["samples"]),
        "our_mean_log_p": log_p.mean().item(),
        "uniform_log_p": -log_vol,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifold", choices=["torus", "sphere", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    kinds = ["torus", "sphere"] if args.manifold == "both" else [args.manifold]
    for kind in kinds:
        r = compare(kind, args.iterations, args.batch_size)
        name = "flat_torus" if kind == "torus" else "sphere"
        print(f"\n## 2d_riemannian_flow_matching_{name}.ipynb\n")
        print("| quantity | reference | ours |\n|---|---|---|")
        print(f"| final-quarter loss (mean ± s.e.) | {r['loss_ref'][0]:.4f} ± {r['loss_ref'][1]:.4f}"
              f" | {r['loss_ours'][0]:.4f} ± {r['loss_ours'][1]:.4f} |")  # fmt: skip
        print(f"| mean log p of own samples (ours only) | n/a (no Riemannian likelihood) | "
              f"{r['our_mean_log_p']:.3f} (uniform: {r['uniform_log_p']:.3f}) |")  # fmt: skip
        print(f"\nmax |loss diff| per iteration: {r['max_loss_diff']:.2e}; TV(reference samples, "
              f"ours) = {r['tv_ref_vs_ours']:.3f}, noise floor TV(reference seed 0, seed 1) = "
              f"{r['tv_noise_floor']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
