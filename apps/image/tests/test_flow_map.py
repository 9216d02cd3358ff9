"""``--objective meanflow | imf``: a flow-map run trains, samples and evaluates at 1, 2, 4 NFE."""

from __future__ import annotations

import json

import pytest
import torch

from fm_image.cli import main
from fm_image.models import build_model
from fm_image.run import load_run
from fm_image.train import train


@pytest.fixture(scope="module")
def flow_map_run(tmp_path_factory):
    from fm_image.config import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fmap") / "run"
    train(TrainConfig(out=str(out), objective="meanflow", steps=3, batch_size=32, warmup_steps=0,
                      log_every=1, ckpt_every=3, progress=False, sample_nfe=1))  # fmt: skip
    return out


def test_flow_map_run_trains_a_finite_loss_and_writes_its_grid(flow_map_run):
    lines = [json.loads(x) for x in (flow_map_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines)
    assert (flow_map_run / "samples.png").is_file()
    run = load_run(flow_map_run)
    assert run.flow.flow_map and run.model.embed.gap is not None


@pytest.mark.parametrize("nfe", [1, 2, 4])
def test_sample_and_evaluate_take_nfe_jumps(flow_map_run, tmp_path, capsys, nfe):
    out = tmp_path / "g.png"
    assert main(["sample", "--run", str(flow_map_run), "--num", "10", "--out", str(out),
                 "--nfe", str(nfe)]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == nfe
    if nfe == 1:
        code = main(["evaluate", "--run", str(flow_map_run), "--num", "20", "--nfe", "1",
                     "--classifier-steps", "5"])  # fmt: skip
        assert code == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["nfe"] == 1 and result["method"] == "flow-map"
        assert result["fd"] > 0


def test_extra_guidance_at_sampling_is_one_batched_call_per_jump(flow_map_run):
    run = load_run(flow_map_run)
    labels = torch.arange(4)
    g = torch.Generator().manual_seed(0)
    plain, _ = run.flow.sample(run.model, labels, nfe=2, generator=g)
    g = torch.Generator().manual_seed(0)
    images, nfe = run.flow.sample(run.model, labels, nfe=2, cfg_scale=0.5, generator=g)
    assert nfe == 2 and images.shape == (4, 1, 8, 8) and images.dtype == torch.uint8
    assert not torch.equal(images, plain)


def test_flow_map_network_needs_r_and_a_plain_one_refuses_it():
    fmap = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10, flow_map=True)
    plain = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10)
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert fmap(x, t, None, r=t).shape == x.shape
    with pytest.raises(ValueError, match="flow_map=True"):
        fmap(x, t)
    with pytest.raises(ValueError, match="flow_map=True"):
        plain(x, t, r=t)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "shortcut"], "invalid choice"),
        (["--objective", "meanflow", "--flow", "discrete"], "needs --flow continuous"),
        (["--objective", "imf", "--mf-equal-fraction", "1.5"], "mf-equal-fraction"),
    ],
)
def test_bad_flow_map_options_are_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["train", "--out", str(tmp_path / "r"), "--steps", "1", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    from fm_image.config import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(TrainConfig(out=str(out), steps=3, batch_size=32, warmup_steps=0, log_every=1,
                      ckpt_every=3, progress=False, sample_nfe=1))  # fmt: skip
    return out


@pytest.mark.parametrize("reflow_loss", ["huber", "meanflow"])
def test_reflow_run_makes_the_teachers_pairs_and_samples_in_nfe_jumps(
    teacher_run, tmp_path, capsys, reflow_loss
):
    from fm_image.config import TrainConfig

    out = tmp_path / "student"
    summary = train(TrainConfig(out=str(out), objective="reflow", teacher=str(teacher_run),
                                reflow_pairs=40, reflow_loss=reflow_loss, steps=2, batch_size=16,
                                warmup_steps=0, log_every=1, ckpt_every=2, progress=False,
                                sample_nfe=1))  # fmt: skip
    assert summary["prepare_seconds"] > 0
    assert "reflow pairs:" in capsys.readouterr().err
    from fm_core.coupling import ReflowCoupling

    pairs = ReflowCoupling(out / "reflow-pairs")
    assert len(pairs) == 40 and pairs.labels is not None
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines)
    assert main(["evaluate", "--run", str(out), "--num", "20", "--nfe", "2",
                 "--classifier-steps", "5"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == 2


def test_a_reflow_student_starts_as_its_teachers_velocity_for_every_jump(teacher_run):
    from fm_image.flow_map import _init_from_teacher

    teacher = load_run(teacher_run).model
    student = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10, flow_map=True)
    x, t, label = torch.randn(3, 1, 8, 8), torch.tensor([0.0, 0.3, 0.5]), torch.tensor([1, 2, 10])
    r = torch.tensor([1.0, 0.4, 0.75])
    assert not torch.allclose(student(x, t, label, r=r), teacher(x, t, label))
    _init_from_teacher(student, teacher)
    torch.testing.assert_close(student(x, t, label, r=r), teacher(x, t, label))
    with pytest.raises(ValueError, match="does not match"):
        _init_from_teacher(student, build_model("unet-tiny", channels=1, image_size=(8, 8),
                                                num_classes=10))  # fmt: skip


def test_bad_teachers_are_one_line_exit_2(teacher_run, flow_map_run, tmp_path, capsys):
    cases = [
        (["--objective", "reflow"], "needs --teacher"),
        (["--teacher", str(teacher_run)], "applies to --objective reflow only"),
        (["--objective", "reflow", "--teacher", str(tmp_path / "none")], "--teacher"),
        (["--objective", "reflow", "--teacher", str(flow_map_run)], "must be an --objective fm"),
        (["--objective", "reflow", "--teacher", str(teacher_run), "--model", "unet-tiny"], "model="),
        (["--objective", "reflow", "--teacher", str(teacher_run), "--reflow-pairs", "0"],
         "--reflow-pairs"),
        (["--objective", "reflow", "--teacher", str(teacher_run), "--reflow-one-step", "2"],
         "--reflow-one-step"),
    ]  # fmt: skip
    for args, message in cases:
        code = main(["train", "--out", str(tmp_path / "r"), "--steps", "1", *args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, (args, err)
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("reflow_loss", ["fm", "huber"])
@pytest.mark.parametrize("one_step", [1.0, 0.0])
def test_reflow_loss_regresses_the_pairs_jump_at_the_one_step_fraction(
    tiny_config, tmp_path, one_step, reflow_loss
):
    """Every stored pair is (a, b); a model that returns b - a exactly at (t, r) = (0, 1) and 0
    elsewhere has zero loss when the whole batch is at the 1-step jump, and not otherwise: the
    mean square of b - a (``fm``) or its pseudo-Huber value (``huber``)."""
    from fm_image.flow_map import REFLOW_HUBER_C, FlowMapObjective
    from fm_image.flows import StepSlice

    cfg = tiny_config(
        tmp_path / "r", objective="reflow", teacher="unused", reflow_one_step=one_step,
        reflow_loss=reflow_loss,
    )  # fmt: skip
    flow = FlowMapObjective(cfg, (1, 8, 8), 10, 17)
    a, b = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    flow._pairs = (a.expand(5, -1, -1, -1), b.expand(5, -1, -1, -1), torch.arange(5))

    def model(x, t, r, label):
        jump = ((t == 0) & (r == 1)).float()[:, None, None, None]
        return jump * (b - a)

    loss = flow.loss(model, torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.long),
                     StepSlice(8, 0, 8), torch.Generator().manual_seed(0))  # fmt: skip
    norm2 = float((b - a).square().sum())
    if one_step == 1.0:
        assert float(loss) == 0.0
    elif reflow_loss == "fm":
        assert float(loss) == pytest.approx(norm2 / 64, rel=1e-5)
    else:
        c = REFLOW_HUBER_C
        assert float(loss) == pytest.approx((norm2 + c * c) ** 0.5 - c, rel=1e-5)


def test_pseudo_huber_is_quadratic_near_zero_and_has_unit_gradient_far_away():
    from fm_image.flow_map import pseudo_huber

    c = 0.03
    small = torch.full((1, 4), 1e-4, requires_grad=True)
    big = torch.full((1, 4), 10.0, requires_grad=True)
    (pseudo_huber(small, c) + pseudo_huber(big, c)).sum().backward()
    # ||e||^2 / 2c near zero (gradient e / c), ||e|| - c far away (gradient of norm 1)
    assert float(pseudo_huber(small.detach(), c)) == pytest.approx(4e-8 / (2 * c), rel=1e-3)
    torch.testing.assert_close(small.grad, small.detach() / c, rtol=1e-3, atol=0)
    assert float(big.grad.norm()) == pytest.approx(1.0, rel=1e-4)
    assert pseudo_huber(torch.zeros(3, 2, 2), c).tolist() == [0.0, 0.0, 0.0]


def test_reflow_runs_default_to_the_shorter_ema_and_an_explicit_decay_wins():
    from fm_image.config import REFLOW_EMA_DECAY, TrainConfig

    assert TrainConfig().ema_decay == 0.999 == TrainConfig(objective="meanflow").ema_decay
    assert TrainConfig(objective="reflow", teacher="x").ema_decay == REFLOW_EMA_DECAY == 0.995
    assert TrainConfig(objective="reflow", teacher="x", ema_decay=0.9).ema_decay == 0.9
    with pytest.raises(ValueError, match="--ema-decay"):
        TrainConfig(ema_decay=1.0)._check_optimizer()
