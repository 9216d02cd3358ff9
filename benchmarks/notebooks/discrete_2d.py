"""Re-run of the reference's ``examples/2d_discrete_flow_matching.ipynb``, at reduced sizes.

Cells reproduced (our code, the notebook's calls): a checkerboard on a ``V x V`` grid of tokens;
``MixtureDiscreteProbPath(scheduler=PolynomialConvexScheduler(n=2.0))``; a token-embedding MLP
returning logits ``[B, 2, V]``; ``MixturePathGeneralizedKL(path=path)(logits, x_1, x_t, t)``;
sampling with a softmax-wrapped model and ``MixtureDiscreteEulerSolver(model, path,
vocabulary_size).sample(x_init, step_size=1/nfe, return_intermediates=True,
time_grid=linspace(0, 1 - eps, n_plots))``, for the uniform and the mask source.

The two libraries draw ``x_t`` with different random numbers (the path's sampling and the
categorical draws are seeded the same but consume the generator differently), so losses and
samples agree in distribution, not draw by draw: the table compares loss means with their
standard errors, and the histogram distance between the libraries' samples with the distance
between two of the reference's own runs (the noise floor).

Run:  python benchmarks/notebooks/discrete_2d.py [--iterations 300] [--source uniform]
"""

from __future__ import annotations

import argparse

import torch
from common import LIBS, checkerboard, tail_mean
from torch import nn

EPSILON = 1e-3


def discrete_checkerboard(vocab_size: int, batch_size: int) -> torch.Tensor:
    """The checkerboard binned onto ``vocab_size`` tokens per coordinate, long ``[B, 2]``."""
    x = checkerboard(batch_size) * 0.45  # back to [-2, 2)^2
    return ((x + 2) / 4 * vocab_size).long().clamp(0, vocab_size - 1)


class MLP(nn.Module):
    """Embedding of each of the 2 tokens and of t, then an MLP to logits ``[B, 2, V]``."""

    def __init__(self, input_dim: int, hidden_dim: int = 128, length: int = 2):
        super().__init__()
        self.input_dim, self.length = input_dim, length
        self.time_embedding = nn.Linear(1, hidden_dim)
        self.token_embedding = nn.Embedding(input_dim, hidden_dim)
        self.main = nn.Sequential(
            nn.SiLU(), nn.Linear(hidden_dim * (length + 1), hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, input_dim * length),
        )  # fmt: skip

    def forward(self, x, t):
        t = self.time_embedding(t.reshape(-1, 1).float())
        h = torch.cat([t, self.token_embedding(x).flatten(1)], dim=1)
        return self.main(h).reshape(x.shape[0], self.length, self.input_dim)


def run(lib, *, source="uniform", vocab_size=32, iterations=300, batch_size=1024, seed=0,
        n_samples=4096, nfe=32):  # fmt: skip
    torch.manual_seed(seed)
    mask_token = vocab_size if source == "mask" else None
    input_size = vocab_size + (source == "mask")
    model = MLP(input_dim=input_size)
    path = lib.MixtureDiscreteProbPath(scheduler=lib.PolynomialConvexScheduler(n=2.0))
    loss_fn = lib.MixturePathGeneralizedKL(path=path)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(iterations):
        x_1 = discrete_checkerboard(vocab_size, batch_size)
        if source == "uniform":
            x_0 = torch.randint_like(x_1, high=vocab_size)
        else:
            x_0 = torch.zeros_like(x_1) + mask_token
        t = torch.rand(x_1.shape[0]) * (1 - EPSILON)
        path_sample = path.sample(t=t, x_0=x_0, x_1=x_1)
        logits = model(path_sample.x_t, path_sample.t)
        loss = loss_fn(logits=logits, x_1=x_1, x_t=path_sample.x_t, t=path_sample.t)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())

    class WrappedModel(lib.ModelWrapper):
        def forward(self, x, t, **extras):
            return torch.softmax(self.model(x, t), dim=-1)

    solver = lib.MixtureDiscreteEulerSolver(model=WrappedModel(model), path=path,
                                            vocabulary_size=input_size)  # fmt: skip
    if source == "uniform":
        x_init = torch.randint(size=(n_samples, 2), high=vocab_size)
    else:
        x_init = (torch.zeros(size=(n_samples, 2)) + mask_token).long()
    sol = solver.sample(x_init=x_init, step_size=1 / nfe, verbose=False,
                        return_intermediates=True, time_grid=torch.linspace(0, 1 - EPSILON, 5))  # fmt: skip
    return {"losses": losses, "samples": sol[-1], "n_times": sol.shape[0]}


def token_tv(a: torch.Tensor, b: torch.Tensor, vocab_size: int, bins: int = 8) -> float:
    """TV distance between the 2-D histograms of token pairs (coarsened to ``bins`` per axis)."""

    def hist(x):
        idx = (x.clamp_max(vocab_size - 1) * bins // vocab_size).long()
        h = torch.bincount(idx[:, 0] * bins + idx[:, 1], minlength=bins * bins).double()
        return h / h.sum()

    return 0.5 * (hist(a) - hist(b)).abs().sum().item()


def compare(source="uniform", iterations=300, batch_size=1024, vocab_size=32, **kw):
    common = dict(source=source, iterations=iterations, batch_size=batch_size,
                  vocab_size=vocab_size, **kw)  # fmt: skip
    ref = run(LIBS["reference"](), **common)
    ref2 = run(LIBS["reference"](), seed=1, **common)
    our = run(LIBS["ours"](), **common)
    data = discrete_checkerboard(vocab_size, 4096)

    on_board = lambda x: token_tv(x, data, vocab_size)
    return {
        "loss_ref": tail_mean(ref["losses"]),
        "loss_ours": tail_mean(our["losses"]),
        "tv_ref_vs_ours": token_tv(ref["samples"], our["samples"], vocab_size),
        "tv_ref_vs_ref_seed1": token_tv(ref["samples"], ref2["samples"], vocab_size),
        "tv_to_data": (on_board(ref["samples"]), on_board(our["samples"])),
        "n_times": (ref["n_times"], our["n_times"]),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    for source in ("uniform", "mask"):
        r = compare(source, args.iterations, args.batch_size)
        print(f"\n## 2d_discrete_flow_matching.ipynb ({source} source, V = 32)\n")
        print("| quantity | reference | ours |\n|---|---|---|")
        print(f"| final-quarter loss (mean ± s.e.) | {r['loss_ref'][0]:.4f} ± {r['loss_ref'][1]:.4f}"
              f" | {r['loss_ours'][0]:.4f} ± {r['loss_ours'][1]:.4f} |")  # fmt: skip
        print(f"| TV(samples, fresh data), 8x8 bins | {r['tv_to_data'][0]:.3f} "
              f"| {r['tv_to_data'][1]:.3f} |")  # fmt: skip
        print(f"\nTV(reference samples, our samples) = {r['tv_ref_vs_ours']:.3f}; noise floor "
              f"TV(reference seed 0, reference seed 1) = {r['tv_ref_vs_ref_seed1']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
