"""Two processes through torchrun (gloo): one run, rank 0 writes, the ranks stay in step."""

import os
import subprocess
import sys

from fm_core.training import read_metrics


def test_two_process_ddp_run(tmp_path, corpus, tiny_options):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "fm_text.cli", "train", "--data", str(corpus), "--out", str(out),
        *tiny_options, "--steps", "4", "--eval-every", "2", "--log-every", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "checkpoints" / "step-00000004").is_dir()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]  # one writer: no duplicated lines
