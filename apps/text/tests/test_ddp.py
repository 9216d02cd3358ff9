"""Two processes through torchrun (gloo): one run, rank 0 writes, the ranks stay in step."""

import pytest
import torch
from safetensors.torch import load_file

from fm_core.testing import run_torchrun
from fm_core.training import read_metrics


def test_two_process_ddp_run(tmp_path, corpus, tiny_options):
    out = tmp_path / "ddp"
    run_torchrun("-m", "fm_text.cli", "train", "--data", corpus, "--out", out, *tiny_options,
                 "--steps", "4", "--eval-every", "2", "--log-every", "2")  # fmt: skip
    assert (out / "checkpoints" / "step-00000004").is_dir()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]  # one writer: no duplicated lines


def test_two_process_ddp_with_the_fused_loss(tmp_path, corpus, tiny_options):
    """The fused loss uses the head's weight outside DDP's forward: its gradient is still reduced.

    Two-process runs with and without fusion end with the same weights (same seeds, same data);
    rank 0 writes the checkpoint, so a head updated from rank 0's gradient alone would differ.
    """
    pytest.importorskip("fm_kernels", reason="the fused loss needs fm-kernels")
    weights = {}
    for fused in ("on", "off"):
        out = tmp_path / fused
        run_torchrun("-m", "fm_text.cli", "train", "--data", corpus, "--out", out, *tiny_options,
                     "--steps", "3", "--eval-every", "3", "--loss", "gkl", "--fused-loss", fused)  # fmt: skip
        weights[fused] = load_file(str(out / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert weights["on"].keys() == weights["off"].keys()
    for key in weights["off"]:
        torch.testing.assert_close(weights["on"][key], weights["off"][key], rtol=1e-4, atol=1e-6)
