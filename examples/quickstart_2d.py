"""Quick start: train a CondOT flow on a 2-D checkerboard, then draw its samples and learned density.

Runs on a CPU in about a minute (``--seconds``) and writes one PNG with three panels: the data,
samples from the flow (midpoint ODE solver), and the learned density $p_1$ computed by the
instantaneous change of variables (exact divergence). No download: the data set is generated.

    python examples/quickstart_2d.py --out quickstart-checkerboard.png
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from fm_core import AffineProbPath, CondOTScheduler, ModelWrapper
from fm_core.solver import ODESolver


def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform samples on the 8 dark cells ((i + j) even) of a 4x4 checkerboard over [-2, 2]^2."""
    k = torch.randint(0, 8, (n,), generator=generator)
    i = k // 2
    j = 2 * (k % 2) + i % 2
    cell = torch.stack([i, j], dim=1).float() - 2
    return cell + torch.rand(n, 2, generator=generator)


class MLP(nn.Module):
    """A velocity field u(x, t): sinusoidal time features concatenated to x, then an MLP."""

    def __init__(self, dim: int = 2, hidden: int = 256, time_features: int = 16):
        super().__init__()
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(0, math.log(100), time_features // 2))
        )
        self.net = nn.Sequential(
            nn.Linear(dim + time_features, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        angles = t[:, None] * self.freqs[None, :]
        return self.net(torch.cat([x, angles.sin(), angles.cos()], dim=1))


def train(seconds: float, batch_size: int, seed: int) -> tuple[MLP, int, float]:
    """Train for a wall-clock budget; return the EMA of the weights (smoother samples)."""
    torch.manual_seed(seed)
    model = MLP()
    ema = copy.deepcopy(model).requires_grad_(False)
    path = AffineProbPath(CondOTScheduler())
    base_lr = 2e-3
    opt = torch.optim.Adam(model.parameters(), lr=base_lr)
    start, step, ema_loss = time.perf_counter(), 0, float("nan")
    while (elapsed := time.perf_counter() - start) < seconds:
        # The learning rate decays linearly to 5% over the time budget (steps are not known ahead).
        for group in opt.param_groups:
            group["lr"] = base_lr * max(0.05, 1.0 - elapsed / seconds)
        x_1 = checkerboard(batch_size)
        x_0 = torch.randn_like(x_1)
        t = torch.rand(batch_size)
        s = path.sample(x_0=x_0, x_1=x_1, t=t)
        loss = (model(s.x_t, s.t) - s.dx_t).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
        step += 1
        ema_loss = loss.item() if step == 1 else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 500 == 0:
            print(
                f"step {step:5d}  loss {ema_loss:.3f}  {elapsed:5.1f}/{seconds:.0f} s", flush=True
            )
    return ema, step, ema_loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("quickstart-checkerboard.png"),
        help="where to write the PNG (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="training time budget in seconds (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=2048, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.batch_size <= 0:
        print("error: --seconds and --batch-size must be positive", file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: the quick start needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 2

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, steps, loss = train(args.seconds, args.batch_size, args.seed)
    model.eval()
    solver = ODESolver(velocity_model=ModelWrapper(model))

    with torch.no_grad():
        samples = solver.sample(x_init=torch.randn(20_000, 2), step_size=0.02, method="midpoint")

    n = 150
    axis = torch.linspace(-3, 3, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    log_p0 = lambda x: -0.5 * x.pow(2).sum(dim=1) - math.log(2 * math.pi)
    _, log_p1 = solver.compute_likelihood(
        x_1=grid, log_p0=log_p0, step_size=0.05, method="midpoint", exact_divergence=True
    )
    density = log_p1.exp().reshape(n, n)

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.5))
    data = checkerboard(20_000)
    for ax, pts, title in (
        (axes[0], data, "data"),
        (axes[1], samples, "flow samples (midpoint, 50 steps)"),
    ):
        ax.hist2d(
            pts[:, 0].numpy(), pts[:, 1].numpy(), bins=150, range=[[-3, 3], [-3, 3]], cmap="viridis"
        )
        ax.set_title(title)
    axes[2].imshow(density.numpy(), extent=(-3, 3, -3, 3), origin="lower", cmap="viridis")
    axes[2].set_title("learned density $p_1$ (exact divergence)")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"CondOT flow matching on a checkerboard: {steps} steps, {args.seconds:.0f} s, loss {loss:.3f}"
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
