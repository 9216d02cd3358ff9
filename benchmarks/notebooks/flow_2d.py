"""Re-run of the reference's ``examples/2d_flow_matching.ipynb`` cells, at reduced sizes.

Cells reproduced (our own code, the notebook's calls): train an MLP velocity on the 2-D
checkerboard with ``AffineProbPath(scheduler=CondOTScheduler())`` and the plain L2 loss; wrap it
in a ``ModelWrapper`` subclass; sample with ``ODESolver.sample(time_grid=linspace(0, 1, 10),
method='midpoint', step_size=None, return_intermediates=True)``; compute log-likelihoods on a
grid with ``compute_likelihood(method='midpoint', step_size=0.05, exact_divergence=True/False)``.

Run:  python benchmarks/notebooks/flow_2d.py [--iterations 300] [--batch-size 1024]
"""

from __future__ import annotations

import argparse

import torch
from common import LIBS, checkerboard, gaussian_log_density, tail_mean
from torch import nn


class MLP(nn.Module):
    """The notebook's velocity MLP shape: [x, t] -> 4 hidden SiLU layers -> x."""

    def __init__(self, input_dim: int = 2, hidden_dim: int = 128):
        super().__init__()
        layers, d = [], input_dim + 1
        for _ in range(4):
            layers += [nn.Linear(d, hidden_dim), nn.SiLU()]
            d = hidden_dim
        self.main = nn.Sequential(*layers, nn.Linear(d, input_dim))

    def forward(self, x, t):
        t = t.reshape(-1, 1).float().expand(x.shape[0], 1)
        return self.main(torch.cat([x, t], dim=1))


def run(lib, *, iterations=300, batch_size=1024, hidden_dim=128, grid_size=40, seed=42,
        num_acc=4, n_samples=4096):  # fmt: skip
    torch.manual_seed(seed)
    vf = MLP(hidden_dim=hidden_dim)
    path = lib.AffineProbPath(scheduler=lib.CondOTScheduler())
    optim = torch.optim.Adam(vf.parameters(), lr=1e-3)
    losses = []
    for _ in range(iterations):
        optim.zero_grad()
        x_1 = checkerboard(batch_size)
        x_0 = torch.randn_like(x_1)
        t = torch.rand(x_1.shape[0])
        path_sample = path.sample(t=t, x_0=x_0, x_1=x_1)
        loss = torch.pow(vf(path_sample.x_t, path_sample.t) - path_sample.dx_t, 2).mean()
        loss.backward()
        optim.step()
        losses.append(loss.item())

    class WrappedModel(lib.ModelWrapper):
        def forward(self, x, t, **extras):
            return self.model(x, t, **extras)

    wrapped_vf = WrappedModel(vf)
    solver = lib.ODESolver(velocity_model=wrapped_vf)
    x_init = torch.randn(n_samples, 2, generator=torch.Generator().manual_seed(seed))
    T = torch.linspace(0, 1, 10)
    with torch.no_grad():
        sol = solver.sample(time_grid=T, x_init=x_init, method="midpoint", step_size=None,
                            return_intermediates=True)  # fmt: skip

    axis = torch.linspace(-5, 5, grid_size)
    x_1 = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_p_acc = 0
    for _ in range(num_acc):
        _, log_p = solver.compute_likelihood(x_1=x_1, method="midpoint", step_size=0.05,
                                             exact_divergence=False, log_p0=gaussian_log_density)  # fmt: skip
        log_p_acc = log_p_acc + log_p
    log_p_acc = log_p_acc / num_acc
    _, exact_log_p = solver.compute_likelihood(x_1=x_1, method="midpoint", step_size=0.05,
                                               exact_divergence=True, log_p0=gaussian_log_density)  # fmt: skip
    cell = (10 / (grid_size - 1)) ** 2  # the likelihood's mass on the grid should be near 1
    return {
        "losses": losses,
        "samples": sol[-1].detach(),
        "sol_shape": tuple(sol.shape),
        "exact_log_p": exact_log_p.detach(),
        "hutchinson_log_p": log_p_acc.detach(),
        "mass": (exact_log_p.exp().sum() * cell).item(),
    }


def compare(iterations=300, batch_size=1024, **kw):
    out = {name: run(LIBS[name](), iterations=iterations, batch_size=batch_size, **kw)
           for name in ("reference", "ours")}  # fmt: skip
    ref, our = out["reference"], out["ours"]
    m_ref, se_ref = tail_mean(ref["losses"])
    m_our, se_our = tail_mean(our["losses"])
    return {
        "loss_ref": (m_ref, se_ref),
        "loss_ours": (m_our, se_our),
        "max_loss_diff": max(abs(a - b) for a, b in zip(ref["losses"], our["losses"], strict=True)),
        "sample_diff": (ref["samples"] - our["samples"]).abs().max().item(),
        "exact_log_p_diff": (ref["exact_log_p"] - our["exact_log_p"]).abs().max().item(),
        "hutch_mean_ref": ref["hutchinson_log_p"].mean().item(),
        "hutch_mean_ours": our["hutchinson_log_p"].mean().item(),
        "exact_mean": our["exact_log_p"].mean().item(),
        "mass": (ref["mass"], our["mass"]),
        "sol_shape": (ref["sol_shape"], our["sol_shape"]),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    r = compare(args.iterations, args.batch_size)
    print("## 2d_flow_matching.ipynb (checkerboard, CondOT)\n")
    print("| quantity | reference | ours |\n|---|---|---|")
    print(f"| final-quarter loss (mean ± s.e.) | {r['loss_ref'][0]:.4f} ± {r['loss_ref'][1]:.4f} "
          f"| {r['loss_ours'][0]:.4f} ± {r['loss_ours'][1]:.4f} |")  # fmt: skip
    print(f"| mean exact log p on the grid | | {r['exact_mean']:.4f} |")
    print(f"| mean Hutchinson log p | {r['hutch_mean_ref']:.4f} | {r['hutch_mean_ours']:.4f} |")
    print(f"| mass of exp(log p) on the grid | {r['mass'][0]:.3f} | {r['mass'][1]:.3f} |")
    print(f"\nmax |loss diff| per iteration: {r['max_loss_diff']:.2e}; max |sample diff|: "
          f"{r['sample_diff']:.2e}; max |exact log p diff|: {r['exact_log_p_diff']:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
