"""Reflow pairs: exact on a Gaussian flow, resumable, served by label; straight by construction."""

from __future__ import annotations

import pytest
import torch

from fm_core import CondOTProbPath, FlowMatchingLoss
from fm_core.coupling import Coupling, ReflowCoupling, generate_reflow_pairs
from fm_core.testing import GaussianFlow

MU = torch.tensor([2.0, -1.0])


def _make(folder, **kw):
    args = {"num": 20, "batch_size": 8, "shape": (2,), "step_size": 0.1, "method": "rk4"}
    return generate_reflow_pairs(GaussianFlow(MU, 0.5), folder, **{**args, **kw})


def test_pairs_follow_the_exact_flow_and_resume_identically(tmp_path):
    folder = _make(tmp_path / "p")
    pairs = ReflowCoupling(folder)
    assert len(pairs) == 20 and len(list(folder.glob("pairs-*.pt"))) == 3
    with torch.no_grad():
        exact = GaussianFlow(MU, 0.5).flow(pairs.x_0, 1.0)
    torch.testing.assert_close(pairs.x_1, exact, atol=1e-4, rtol=0)
    before = pairs.x_1.clone()
    (folder / "pairs-00002.pt").unlink()  # an interrupted run
    stamp = (folder / "pairs-00001.pt").stat().st_mtime_ns
    _make(folder)
    assert (folder / "pairs-00001.pt").stat().st_mtime_ns == stamp  # kept, not recomputed
    torch.testing.assert_close(ReflowCoupling(folder).x_1, before)


def test_trajectory_states_follow_the_exact_flow_at_the_stored_times(tmp_path):
    times = [0.0, 0.25, 0.5, 1.0]
    pairs = ReflowCoupling(_make(tmp_path / "t", times=times))
    assert pairs.x_t.shape == (20, 4, 2) and pairs.times.tolist() == times
    with torch.no_grad():
        for k, t in enumerate(times):
            exact = GaussianFlow(MU, 0.5).flow(pairs.x_0, t)
            torch.testing.assert_close(pairs.x_t[:, k], exact, atol=1e-4, rtol=0)
    torch.testing.assert_close(pairs.x_t[:, -1], pairs.x_1)
    assert ReflowCoupling(_make(tmp_path / "p")).x_t is None
    with pytest.raises(ValueError, match="other settings"):
        _make(tmp_path / "t", times=[0.0, 1.0])
    with pytest.raises(ValueError, match="times must increase"):
        _make(tmp_path / "u", times=[0.0, 0.5, 0.5, 1.0])


def test_reflow_pairs_make_the_flow_matching_target_deterministic(tmp_path):
    """Reflow pairs of the Gaussian flow are x_1 = mu + s x_0, so on the straight path
    x_t = t mu + (1 - t + t s) x_0 the target x_1 - x_0 is a function of x_t: the rectified
    velocity mu + (s - 1)(x_t - t mu) / (1 - t + t s) has FM loss ~0 on them, and not on
    independent pairs (the coupling removed the crossing of paths)."""
    pairs = ReflowCoupling(_make(tmp_path / "p", num=400, batch_size=400)).sample(
        400, generator=torch.Generator().manual_seed(0)
    )
    path, loss_fn = CondOTProbPath(), FlowMatchingLoss(CondOTProbPath())
    t = torch.rand(400, generator=torch.Generator().manual_seed(1))

    def loss(x_0, x_1):
        x_t = path.sample(x_0, x_1, t).x_t
        tt = t[:, None]
        v = MU + (0.5 - 1) * (x_t - tt * MU) / (1 - tt + tt * 0.5)
        return float(loss_fn(v, x_0, x_1, t))

    independent = MU + 0.5 * torch.randn(400, 2, generator=torch.Generator().manual_seed(2))
    assert loss(pairs.x_0, pairs.x_1) < 1e-9
    assert loss(pairs.x_0, independent) > 0.1


def test_labels_are_served_by_class_and_the_coupling_interface(tmp_path):
    net = lambda x, t, label: label[:, None].float() * torch.ones_like(x)
    folder = generate_reflow_pairs(net, tmp_path / "c", num=30, batch_size=8, shape=(3,),
                                   num_classes=3, step_size=0.5, method="euler")  # fmt: skip
    coupling = ReflowCoupling(folder)
    assert isinstance(coupling, Coupling)
    want = torch.tensor([2, 0, 1, 2, 2])
    out = coupling(torch.zeros(5, 3), torch.zeros(5, 3), y_0=want, y_1=want,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.y_1.tolist() == want.tolist()
    torch.testing.assert_close(out.x_1 - out.x_0, want[:, None].float().expand(5, 3))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="num must be a positive int"):
        _make(tmp_path / "a", num=0)
    _make(tmp_path / "b")
    with pytest.raises(ValueError, match="other settings"):
        _make(tmp_path / "b", seed=1)
    with pytest.raises(ValueError, match="no reflow pairs"):
        ReflowCoupling(tmp_path / "nothing")
    (tmp_path / "b" / "pairs-00000.pt").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        ReflowCoupling(tmp_path / "b")
