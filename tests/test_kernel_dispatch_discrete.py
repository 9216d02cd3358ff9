"""fm-discrete with backend="triton" (fm-kernels, interpreted on CPU) agrees with its torch path."""

from __future__ import annotations

import pytest
import torch

from fm_core import CondOTScheduler, ModelWrapper, PolynomialConvexScheduler
from fm_discrete import (
    MixtureDiscreteEulerSolver,
    MixtureDiscreteProbPath,
    MixturePathGeneralizedKL,
)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("scheduler", [CondOTScheduler, lambda: PolynomialConvexScheduler(2)])
def test_generalized_kl_triton_matches_torch(reduction, scheduler):
    g = torch.Generator().manual_seed(0)
    B, L, V = 3, 5, 37
    path = MixtureDiscreteProbPath(scheduler())
    x_1 = torch.randint(0, V, (B, L), generator=g)
    x_0 = torch.randint(0, V, (B, L), generator=g)
    t = torch.tensor([0.1, 0.6, 1.0])  # includes the guarded end point
    x_t = path.sample(x_0, x_1, t).x_t
    out = {}
    for backend in ("torch", "triton"):
        logits = torch.randn(B, L, V, generator=torch.Generator().manual_seed(1)).requires_grad_()
        loss = MixturePathGeneralizedKL(path, reduction=reduction, backend=backend)(
            logits, x_1, x_t, t
        )
        loss.sum().backward()
        out[backend] = (loss.detach(), logits.grad)
    torch.testing.assert_close(out["triton"][0], out["torch"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["triton"][1], out["torch"][1], rtol=1e-5, atol=1e-7)


class _FixedPosterior(torch.nn.Module):
    """A model whose posterior is a fixed distribution per position (independent of x_t)."""

    def __init__(self, probs):
        super().__init__()
        self.probs = probs

    def forward(self, x, t):
        return self.probs.expand(x.shape[0], *self.probs.shape).clone()


def test_euler_solver_triton_reproduces_the_target_marginals():
    """With a posterior equal to a factorised target, sampling must reproduce the target.

    The kernel draws its own random numbers (Philox), so the check is distributional.
    """
    V, L, n = 6, 2, 4000
    g = torch.Generator().manual_seed(0)
    target = torch.softmax(torch.randn(L, V, generator=g) * 1.5, dim=-1)
    posterior = torch.cat([target, torch.zeros(L, 1)], dim=-1)  # the mask (id V) has no mass
    path = MixtureDiscreteProbPath(CondOTScheduler())
    x_init = torch.full((n, L), V)  # all mask (mask token = V)
    freqs = {}
    for backend in ("torch", "triton"):
        solver = MixtureDiscreteEulerSolver(
            ModelWrapper(_FixedPosterior(posterior)),
            path,
            vocabulary_size=V + 1,
            mask_token=V,
            backend=backend,
        )
        # The kernel draws in float32 with its own seed: it runs only when asked for exactly that.
        x = solver.sample(x_init, step_size=1 / 8, dtype_categorical=torch.float32)
        assert (x < V).all(), "every mask is resolved at t = 1"
        freqs[backend] = torch.stack([torch.bincount(x[:, i], minlength=V) for i in range(L)]) / n
    for backend, f in freqs.items():
        tv = 0.5 * (f - target).abs().sum(-1).max().item()
        assert tv < 0.04, f"{backend}: total variation {tv:.3f}"


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_path_is_pinned_to_the_kernels_reference(reduction):
    """fm-discrete keeps its own torch path (fm-kernels is optional); it must equal the reference.

    ``reduction="none"`` is per position, ``[B, L]``, as in the reference ``flow_matching``.
    """
    import fm_kernels

    g = torch.Generator().manual_seed(4)
    B, L, V = 3, 4, 11
    path = MixtureDiscreteProbPath(CondOTScheduler())
    x_1, x_0 = torch.randint(0, V, (2, B, L), generator=g)
    t = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64)
    x_t = path.sample(x_0, x_1, t).x_t
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    loss = MixturePathGeneralizedKL(path, reduction=reduction, backend="torch")
    ours = loss(logits, x_1, x_t, t)
    coeff = path.jump_coefficient(t, loss.eps)[:, None].expand(B, L)
    ref = fm_kernels.reference.generalized_kl(
        logits.reshape(-1, V), x_1.reshape(-1), x_t.reshape(-1), coeff.reshape(-1),
        reduction=reduction,
    )  # fmt: skip
    torch.testing.assert_close(ours, ref.reshape(B, L) if reduction == "none" else ref)
