import textwrap

import pytest
import torch

from fm_core.testing import run_torchrun
from fm_core.training import exit_process, init_distributed, unwrap_model


def test_single_process_without_torchrun_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
    net = torch.nn.Linear(2, 2)
    assert ctx.wrap(net) is net
    t = torch.tensor([3.0])
    assert ctx.all_reduce_mean(t) is t


@pytest.mark.parametrize(
    ("env", "match"),
    [({"WORLD_SIZE": "two"}, "WORLD_SIZE"), ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2")],
)
def test_bad_environment_is_named(monkeypatch, env, match):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=match):
        init_distributed()


def test_unwrap_model_sees_through_compile():
    net = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.compile(net)) is net


SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from fm_core.training import EMA, Checkpointer, init_distributed
    ctx = init_distributed()
    if True:
        assert ctx.backend == "gloo" and ctx.world_size == 2
        mean = ctx.all_reduce_mean(torch.tensor([float(ctx.rank)]))
        assert mean.item() == 0.5, mean
        torch.manual_seed(0)
        model = ctx.wrap(torch.nn.Linear(3, 1))
        ema = EMA(model, decay=0.5)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(ctx.rank)  # each rank sees different data
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        opt.step()
        ema.update(model)
        if ctx.is_main:
            Checkpointer(sys.argv[1]).save(1, model=model, ema=ema, optimizer=opt)
        ctx.barrier()
        weights = [p.detach().clone() for p in model.parameters()]
        gathered = [torch.zeros_like(weights[0]) for _ in range(2)]
        torch.distributed.all_gather(gathered, weights[0])
        assert torch.equal(gathered[0], gathered[1]), "DDP kept replicas in sync"
    ctx.exit_process(0)
    """
)


def test_two_process_gloo_run_through_torchrun(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    run_torchrun(script, tmp_path / "run", timeout=180)
    assert (tmp_path / "run" / "checkpoints" / "step-00000001" / "model.safetensors").is_file()


def test_exit_process_is_sys_exit_in_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit) as info:
        exit_process(3)
    assert info.value.code == 3


def test_leaving_on_an_exception_skips_the_barrier(monkeypatch):
    """A peer still training never reaches the barrier: an error path must not wait for it."""
    import torch.distributed as dist

    from fm_core.training import DistributedContext

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    ctx = DistributedContext(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match="boom"), ctx:
        raise RuntimeError("boom")
    assert calls == ["destroy"]
    with ctx:
        pass
    assert calls == ["destroy", "barrier", "destroy"]
