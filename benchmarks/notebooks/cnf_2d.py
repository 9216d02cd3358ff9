"""Re-run of the reference's ``examples/2d_continuous_normalizing_flow.ipynb``, at reduced sizes.

The notebook trains a CNF by maximum likelihood: each step calls
``ODESolver.compute_likelihood(x_1, log_p0, ..., exact_divergence=True, enable_grad=True)`` and
minimises ``-log_p.mean()``. On ``flow_matching`` 1.0.10 that cell fails (its dynamics return
detached tensors, so the loss has no graph); on ours it trains. Both libraries then evaluate the
trained flow's held-out log-likelihood, which must agree.

Run:  python benchmarks/notebooks/cnf_2d.py [--iterations 200] [--method midpoint]
"""

from __future__ import annotations

import argparse
import math

import torch
from common import LIBS, gaussian_log_density
from torch import nn


def two_moons(n: int, noise: float = 0.1, generator=None) -> torch.Tensor:
    """sklearn's ``make_moons`` distribution, written in torch: ``[n, 2]``."""
    half = n // 2
    s = torch.rand(n, generator=generator) * math.pi
    upper = torch.stack([s.cos(), s.sin()], -1)
    lower = torch.stack([1 - s.cos(), 0.5 - s.sin()], -1)
    x = torch.cat([upper[:half], lower[half:]])
    return x + noise * torch.randn(n, 2, generator=generator)


class Flow(nn.Module):
    """The notebook's velocity: [t, x] -> three ELU layers of width h -> x."""

    def __init__(self, dim: int = 2, h: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, h), nn.ELU(), nn.Linear(h, h), nn.ELU(), nn.Linear(h, h),
            nn.ELU(), nn.Linear(h, dim),
        )  # fmt: skip

    def forward(self, t, x_t):
        return self.net(torch.cat((t, x_t), -1))


def wrapped(lib, flow):
    class WrappedModel(lib.ModelWrapper):
        def forward(self, x, t, **extras):
            t = t.view(1, 1).expand(x.shape[0], 1)  # the model wants time as [B, 1]
            return self.model(t, x)

    return WrappedModel(flow)


def train(lib, *, iterations=200, batch_size=256, method="midpoint", step_size=0.05, seed=0):
    """The notebook's training cell; returns (flow, losses) or raises what the library raises."""
    torch.manual_seed(seed)
    flow = Flow()
    solver = lib.ODESolver(velocity_model=wrapped(lib, flow))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    losses = []
    for _ in range(iterations):
        x_1 = two_moons(batch_size)
        _, log_p = solver.compute_likelihood(x_1=x_1, log_p0=gaussian_log_density,
                                             step_size=step_size, method=method,
                                             exact_divergence=True, enable_grad=True)  # fmt: skip
        loss = -log_p.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return flow, losses


def held_out_log_p(lib, flow, x, method="midpoint", step_size=0.05):
    solver = lib.ODESolver(velocity_model=wrapped(lib, flow))
    _, log_p = solver.compute_likelihood(x_1=x, log_p0=gaussian_log_density, step_size=step_size,
                                         method=method, exact_divergence=True)  # fmt: skip
    return log_p.detach()


def compare(iterations=200, method="midpoint", batch_size=256):
    step = None if method == "dopri5" else 0.05
    try:
        train(LIBS["reference"](), iterations=1, batch_size=batch_size, method=method,
              step_size=step)  # fmt: skip
        ref_error = None
    except RuntimeError as err:
        ref_error = f"{type(err).__name__}: {err}"
    flow, losses = train(LIBS["ours"](), iterations=iterations, batch_size=batch_size,
                         method=method, step_size=step)  # fmt: skip
    x = two_moons(2048, generator=torch.Generator().manual_seed(1))
    ours = held_out_log_p(LIBS["ours"](), flow, x, method, step)
    ref = held_out_log_p(LIBS["reference"](), flow, x, method, step)
    untrained = held_out_log_p(LIBS["ours"](), Flow(), x, method, step)
    return {
        "reference_training": ref_error or "trains",
        "first_loss": losses[0],
        "last_losses": sum(losses[-10:]) / len(losses[-10:]),
        "held_out_ours": ours.mean().item(),
        "held_out_reference": ref.mean().item(),
        "held_out_untrained": untrained.mean().item(),
        "max_diff": (ours - ref).abs().max().item(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--method", default="midpoint", choices=["midpoint", "dopri5", "euler"])
    args = parser.parse_args()
    r = compare(args.iterations, args.method)
    print(f"## 2d_continuous_normalizing_flow.ipynb (two moons, {args.method})\n")
    print(f"- reference 1.0.10, training cell: {r['reference_training']}")
    print(f"- ours: NLL {r['first_loss']:.3f} at step 1 -> {r['last_losses']:.3f} "
          f"(mean of the last 10 of {args.iterations} steps)")  # fmt: skip
    print(f"- held-out mean log p of the trained flow: ours {r['held_out_ours']:.4f}, reference "
          f"{r['held_out_reference']:.4f} (max per-sample diff {r['max_diff']:.1e}); "
          f"untrained flow {r['held_out_untrained']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
