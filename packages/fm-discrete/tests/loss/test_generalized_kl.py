import sys

import pytest
import torch

from fm_core.path.scheduler.convex import CondOTScheduler, PolynomialConvexScheduler
from fm_discrete import MixtureDiscreteProbPath, MixturePathCrossEntropy, MixturePathGeneralizedKL
from fm_discrete import loss as loss_mod


def _direct(logits, x_1, x_t, t, n):
    """Straight from the formula, one position at a time."""
    p = logits.double().softmax(-1)
    out = torch.empty(x_1.shape, dtype=torch.float64)
    for b in range(x_1.shape[0]):
        k, dk = float(t[b]) ** n, n * float(t[b]) ** (n - 1)
        c = dk / (1 - k)
        for i in range(x_1.shape[1]):
            a, y = int(x_1[b, i]), int(x_t[b, i])
            same = float(a == y)
            out[b, i] = -c * (p[b, i, y] - same + (1 - same) * torch.log(p[b, i, a]))
    return out


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    x_1 = torch.randint(0, 7, (3, 5), generator=g)
    x_t = torch.where(
        torch.rand(3, 5, generator=g) < 0.5, x_1, torch.randint(0, 7, (3, 5), generator=g)
    )
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    return logits, x_1, x_t, t


def test_matches_direct_formula_and_reference(batch):
    logits, x_1, x_t, t = batch
    path = MixtureDiscreteProbPath(PolynomialConvexScheduler(2))
    ours = MixturePathGeneralizedKL(path, reduction="none")(logits, x_1, x_t, t)
    torch.testing.assert_close(ours, _direct(logits, x_1, x_t, t, 2))
    assert (ours >= -1e-12).all()
    assert loss_mod.MixturePathGeneralizedKL is MixturePathGeneralizedKL
    torch.testing.assert_close(MixturePathGeneralizedKL(path)(logits, x_1, x_t, t), ours.mean())
    torch.testing.assert_close(
        MixturePathGeneralizedKL(path, "sum")(logits, x_1, x_t, t), ours.sum()
    )
    import flow_matching as fm  # in fm-discrete's test extras
    from flow_matching.loss import MixturePathGeneralizedKL as Ref
    from flow_matching.path import MixtureDiscreteProbPath as RefPath
    from flow_matching.path.scheduler import PolynomialConvexScheduler as RefSched

    del fm
    ref = Ref(RefPath(RefSched(2)), reduction="none")(logits, x_1, x_t, t)
    torch.testing.assert_close(ours, ref)


def test_finite_at_t_one_and_differentiable():
    path = MixtureDiscreteProbPath(CondOTScheduler())
    logits = torch.randn(2, 4, 5, requires_grad=True)
    x_1 = torch.randint(0, 5, (2, 4))
    loss = MixturePathGeneralizedKL(path)(logits, x_1, x_1, torch.ones(2))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_bad_inputs(batch):
    logits, x_1, x_t, t = batch
    fn = MixturePathGeneralizedKL(MixtureDiscreteProbPath(CondOTScheduler()))
    with pytest.raises(ValueError, match="x_1 holds token id 7 outside the vocabulary"):
        fn(logits, torch.full_like(x_1, 7), x_t, t)
    with pytest.raises(ValueError, match="x_t holds token id -1"):
        fn(logits, x_1, torch.full_like(x_t, -1), t)
    with pytest.raises(ValueError, match=r"x_1 must have shape logits\.shape"):
        fn(logits, x_1[:, :4], x_t, t)
    with pytest.raises(ValueError, match="x_t must have the shape of x_1"):
        fn(logits, x_1, x_t[:, :4], t)
    with pytest.raises(ValueError, match=r"t must have shape \[batch_size\]"):
        fn(logits, x_1, x_t, t[:2])
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        fn(logits.long(), x_1, x_t, t)
    with pytest.raises(ValueError, match="reduction must be one of"):
        MixturePathGeneralizedKL(MixtureDiscreteProbPath(CondOTScheduler()), "avg")
    with pytest.raises(TypeError, match="path must be a MixtureDiscreteProbPath"):
        MixturePathGeneralizedKL(CondOTScheduler())


def test_backend_dispatch_without_kernels(batch, monkeypatch):
    logits, x_1, x_t, t = batch
    monkeypatch.setitem(sys.modules, "fm_kernels", None)
    path = MixtureDiscreteProbPath(CondOTScheduler())
    auto = MixturePathGeneralizedKL(path, backend="auto")(logits, x_1, x_t, t)
    torch.testing.assert_close(
        auto, MixturePathGeneralizedKL(path, backend="torch")(logits, x_1, x_t, t)
    )
    with pytest.raises(ImportError, match="pip install fm-kernels"):
        MixturePathGeneralizedKL(path, backend="triton")(logits, x_1, x_t, t)
    with pytest.raises(ValueError, match="backend must be one of"):
        MixturePathGeneralizedKL(path, backend="cuda")


def test_cross_entropy(batch):
    logits, x_1, x_t, _ = batch
    ce = MixturePathCrossEntropy(reduction="none")(logits, x_1)
    torch.testing.assert_close(
        ce, torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), x_1, reduction="none")
    )
    masked = MixturePathCrossEntropy(only_changed=True)(logits, x_1, x_t)
    changed = x_t != x_1
    torch.testing.assert_close(masked, ce[changed].mean())
    with pytest.raises(ValueError, match="x_t is required"):
        MixturePathCrossEntropy(only_changed=True)(logits, x_1)


def test_minus_infinite_log_probability_where_x_1_equals_x_t_is_finite():
    """Issue 12 §2: log p(x_1) = -inf at a position with x_1 = x_t gave NaN (0 * -inf).

    There the bracket is p(x_t) - 1 (the log term has weight 1 - δ = 0), as fm-kernels defines it.
    """
    path = MixtureDiscreteProbPath(CondOTScheduler())
    logits = torch.zeros(1, 2, 4, requires_grad=True)
    with torch.no_grad():
        logits[0, 0, 2] = float("-inf")  # p(token 2) = 0 at position 0
    x_1 = torch.tensor([[2, 1]])
    x_t = torch.tensor([[2, 3]])  # position 0: x_t = x_1 = 2, log p(x_1) = -inf
    t = torch.tensor([0.5])
    loss = MixturePathGeneralizedKL(path, reduction="none")(logits, x_1, x_t, t)
    assert torch.isfinite(loss).all()
    c = 1.0 / (1 - 0.5)
    expected_0 = -c * (0.0 - 1.0)  # p(x_t) = p(2) = 0
    expected_1 = -c * (0.25 + torch.log(torch.tensor(0.25)).item())
    torch.testing.assert_close(loss[0], torch.tensor([expected_0, expected_1]))
    loss.sum().backward()
    assert torch.isfinite(logits.grad[0, 1]).all()
