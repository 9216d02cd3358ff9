"""The generalized KL fused with the output projection (fm-kernels) is the unfused loss, exactly.

The fused path never builds the ``[B·L, V]`` logits: the mask token's logit becomes a ``-inf``
bias and the positions the mask source leaves unmasked get a zero jump coefficient. These tests
compare value and every parameter's gradient with the unfused ``MaskedPosterior`` + generalized KL,
through fm-kernels' torch reference and through its Triton kernel (compiled on CUDA, or run by
Triton's CPU interpreter, ``TRITON_INTERPRET=1``, as the nox session sets it).
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from fm_discrete import MaskedPosterior
from fm_text.cli import main
from fm_text.config import TrainConfig
from fm_text.model import ModelConfig, TextTransformer
from fm_text.objective import FlowObjective

fm_kernels = pytest.importorskip("fm_kernels", reason="the fused loss needs fm-kernels")

V, MASK = 40, 39


def _loss_and_grads(net, objective, x_1, seed):
    net.zero_grad(set_to_none=True)
    posterior = MaskedPosterior(net, MASK, copy_unmasked=objective.source == "mask")
    torch.manual_seed(seed)  # the path's draws
    loss = objective.loss(posterior, x_1, torch.Generator().manual_seed(seed))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _objective(source, sampling, fused, backend="auto"):
    return FlowObjective(
        source=source,
        vocab_size=V,
        mask_id=MASK,
        scheduler_n=1.0,
        loss="gkl",
        time_sampling=sampling,
        fused=fused,
        kernel_backend=backend,
    )


def _backends():
    out = ["torch"]
    if fm_kernels.HAS_TRITON and (fm_kernels.INTERPRETED or torch.cuda.is_available()):
        out.append("triton")
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize(("source", "sampling"), [("mask", "elbo"), ("uniform", "uniform")])
def test_fused_equals_unfused_value_and_gradients(source, sampling, backend):
    torch.manual_seed(0)
    net = TextTransformer(ModelConfig(vocab_size=V, context=12, dim=32, depth=1, heads=2))
    net.head.weight.data.normal_(0, 0.5)  # non-trivial logits (the init is near uniform)
    net.head.weight.data[MASK] = 5 * net.head.weight.data[0]  # the mask's raw logit matters
    x_1 = torch.randint(0, MASK, (6, 12))
    ref_loss, ref_grads = _loss_and_grads(net, _objective(source, sampling, False), x_1, 3)
    loss, grads = _loss_and_grads(net, _objective(source, sampling, True, backend), x_1, 3)
    assert torch.isfinite(ref_loss) and ref_loss > 0
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    assert "head.weight" in grads
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_triton_backend_was_exercised_where_ci_runs():
    """The nox session runs this package's tests under Triton's interpreter: the kernel path ran."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("neither TRITON_INTERPRET=1 nor CUDA: the Triton comparison was not run")
    assert "triton" in _backends()


def test_fused_option_needs_gkl_and_flow():
    with pytest.raises(ValueError, match="fused_loss"):
        TrainConfig(fused_loss="on", loss="ce")
    with pytest.raises(ValueError, match="fused_loss"):
        TrainConfig(fused_loss="on", loss="gkl", model="ar")
    with pytest.raises(ValueError, match="fused_loss"):
        TrainConfig(fused_loss="sometimes")
    with pytest.raises(ValueError, match="loss 'gkl'"):
        _objective("mask", "uniform", True).__class__(
            source="mask", vocab_size=V, mask_id=MASK, scheduler_n=1.0, loss="ce",
            time_sampling="uniform", fused=True,
        )  # fmt: skip


def test_cli_rejects_fused_with_ce(tmp_path, capsys, corpus, tiny_options):
    out = tmp_path / "run"
    code = main(["train", "--data", str(corpus), "--out", str(out), "--fused-loss", "on",
                 "--loss", "ce", *tiny_options])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fused_loss" in err[0]
    assert not out.exists()


def test_training_with_the_fused_loss_matches_unfused(tmp_path, corpus, tiny_options):
    """Same seed, same steps: the fused run's loss curve is the unfused run's."""
    common = ["--data", str(corpus), *tiny_options, "--loss", "gkl", "--steps", "3",
              "--eval-every", "3", "--log-every", "1"]  # fmt: skip
    assert main(["train", "--out", str(tmp_path / "a"), "--fused-loss", "on", *common]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), "--fused-loss", "off", *common]) == 0

    def losses(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r]

    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == 3
    assert a == pytest.approx(b, rel=1e-4)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["fused_loss"] == "on"
