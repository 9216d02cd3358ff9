"""The earth-science recipe ``benchmarks/earth.py``: its CSV reader, split and a 20-step run."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import earth


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(text)
    return path


def test_reader_skips_comments_and_one_header(tmp_path):
    csv = _write(tmp_path, "# source\nlat,long\n10.5,-20\n\n# note\n-90,180\n")
    torch.testing.assert_close(
        earth.read_lat_lon(csv), torch.tensor([[10.5, -20.0], [-90.0, 180.0]], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("lat,lon\n1,2\n3;4\n", 3, "expected 'latitude,longitude'"),
        ("1,2\nlat,lon\n", 2, "expected 'latitude,longitude'"),  # a header after data
        ("lat,lon\nlat,lon\n1,2\n", 2, "expected 'latitude,longitude'"),  # two headers
        ("# c\n1,2,3\n", 2, "expected 'latitude,longitude'"),
        ("1,2\n95,0\n", 2, r"latitude must be in \[-90, 90\]"),
        ("1,2\n0,nan\n", 2, r"latitude must be in \[-90, 90\] and longitude in"),
    ],
)
def test_reader_names_the_malformed_line(tmp_path, text, line, what):
    csv = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"events\.csv, line {line}: {what}"):
        earth.read_lat_lon(csv)


def test_reader_rejects_a_file_without_rows(tmp_path):
    with pytest.raises(ValueError, match="no 'latitude,longitude' rows"):
        earth.read_lat_lon(_write(tmp_path, "# only a comment\nlat,lon\n"))


def test_degrees_map_to_the_unit_sphere():
    deg = torch.tensor([[0.0, 0.0], [0.0, 90.0], [90.0, 0.0], [-90.0, 33.0]], dtype=torch.float64)
    expected = torch.tensor(
        [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, -1.0]], dtype=torch.float64
    )
    torch.testing.assert_close(earth.to_sphere(deg), expected, atol=1e-15, rtol=0)


def test_split_is_80_10_10_disjoint_and_seeded():
    x = torch.arange(1000.0)[:, None]
    train, val, test = earth.split(x, seed=3)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert sorted(torch.cat([train, val, test]).flatten().tolist()) == list(range(1000))
    assert torch.equal(earth.split(x, seed=3)[2], test)
    assert not torch.equal(earth.split(x, seed=4)[2], test)


def test_cli_malformed_file_is_one_line_and_exit_2(tmp_path, capsys):
    csv = _write(tmp_path, "lat,lon\n1,2\noops\n")
    assert earth.main(["--csv", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3" in err


def test_twenty_steps_print_the_json_line(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    lat = (torch.rand(200, generator=g) - 0.5) * 120
    lon = (torch.rand(200, generator=g) - 0.5) * 300
    csv = _write(tmp_path, "lat,lon\n" + "".join(f"{a:.3f},{b:.3f}\n" for a, b in zip(lat, lon)))
    args = ["--csv", str(csv), "--steps", "20", "--batch", "64", "--width", "32", "--depth", "3",
            "--eval-every", "10", "--eval-steps", "1", "--test-steps", "2"]  # fmt: skip
    torch.manual_seed(0)
    assert earth.main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 20 and out["best_step"] in (10, 20)
    assert (out["n_train"], out["n_val"], out["n_test"]) == (160, 20, 20)
    for key in ("test_nll", "val_nll", "train_seconds"):
        assert math.isfinite(out[key])
    # 20 steps leave the flow near its uniform source: log(4 pi) = 2.531 nats
    assert abs(out["test_nll"] - math.log(4 * math.pi)) < 0.5


def test_validation_every_tenth_of_the_steps_by_default(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    lat = (torch.rand(100, generator=g) - 0.5) * 120
    lon = (torch.rand(100, generator=g) - 0.5) * 300
    csv = _write(tmp_path, "lat,lon\n" + "".join(f"{a:.3f},{b:.3f}\n" for a, b in zip(lat, lon)))
    curve = tmp_path / "curve.jsonl"
    args = ["--csv", str(csv), "--steps", "30", "--batch", "32", "--width", "16", "--depth", "2",
            "--eval-steps", "1", "--test-steps", "1", "--curve", str(curve)]  # fmt: skip
    assert earth.main(args) == 0
    steps = [json.loads(line)["step"] for line in curve.read_text().splitlines()]
    assert steps == list(range(3, 31, 3))
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["config"]["eval_every"] == 3 and out["config"]["grid_power"] == 2.0


def test_graded_grid_integrates_a_field_that_acts_near_the_data_more_accurately():
    """A rotation about the z axis at rate (a / eps) exp(-(1 - t) / eps) keeps the area measure
    (divergence 0 exactly) but acts in the last few eps of time: the NLL of the uniform density
    must come out log 4 pi, and the points must move by the closed-form angle; the graded grid
    gets closer than the uniform one with the same number of steps."""

    eps, a = 0.01, 1.0

    class Spin(torch.nn.Module):
        def forward(self, x, t):
            rate = a / eps * torch.exp(-(1 - t) / eps)
            return rate * torch.stack([-x[..., 1], x[..., 0], torch.zeros_like(x[..., 0])], -1)

    x = torch.nn.functional.normalize(
        torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    nll = earth.nll(Spin(), x, 10, "rk4", grid_power=2.0)
    assert abs(nll - math.log(4 * math.pi)) < 1e-4
    solver = earth.RiemannianODESolver(earth.Sphere(), Spin())
    angle = a * (1 - math.exp(-1 / eps))  # total rotation from t = 0 to 1
    errors = {}
    for power in (1.0, 2.0):
        x_0 = solver.compute_likelihood(x, lambda z: torch.zeros(z.shape[0]), None, method="rk4",
                                        time_grid=earth.graded_grid(10, power), exact_divergence=True)[0]  # fmt: skip
        turned = math.atan2(float(x[0, 1]), float(x[0, 0])) - math.atan2(
            float(x_0[0, 1]), float(x_0[0, 0])
        )
        errors[power] = abs((turned - angle + math.pi) % (2 * math.pi) - math.pi)
    assert errors[2.0] < 0.005 < 0.04 < errors[1.0]  # 0.0016 and 0.047 rad


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_train_times_put_e_to_the_1_over_p_within_e_of_the_data(power):
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    t = earth.train_times(u, power)
    assert 0 <= float(t.min()) and float(t.max()) <= 1  # float32 rounds t within 6e-8 of 1 to 1
    for e in (0.01, 0.1, 0.5):
        assert abs(float((1 - t < e).double().mean()) - e ** (1 / power)) < 0.005
    with pytest.raises(ValueError, match="power must be > 0"):
        earth.train_times(u, 0.0)


def test_cli_rejects_a_non_positive_t_power(tmp_path, capsys):
    csv = _write(tmp_path, "lat,lon\n1,2\n")
    assert earth.main(["--csv", str(csv), "--t-power", "0"]) == 2
    assert "--t-power must be > 0" in capsys.readouterr().err


def test_kde_reference_is_a_density_and_cli_prints_it(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=-1)
    u = torch.nn.functional.normalize(
        torch.randn(400_000, 3, generator=g, dtype=torch.float64), dim=-1
    )
    mass = 4 * math.pi * float(earth.kde_log_density(u, centres, (5.0, 20.0)).exp().mean())
    assert abs(mass - 1) < 0.01
    csv = _write(
        tmp_path, "lat,lon\n" + "".join(f"{i % 7 - 3}.0,{i % 11 * 10}.0\n" for i in range(50))
    )
    assert earth.main(["--csv", str(csv), "--kde"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test_nll"] < math.log(4 * math.pi) and math.isfinite(out["val_nll"])


def test_fourier_scales_split_the_columns_and_keep_the_single_scale_features():
    one = earth.VelocityMLP(8, 2, 6, 16.0, seed=0)
    same = earth.VelocityMLP(8, 2, 6, "16", seed=0)
    torch.testing.assert_close(one.freqs_x, same.freqs_x)  # the old float argument still works
    multi = earth.VelocityMLP(8, 2, 7, "1,1000", seed=0)  # 4 columns of scale 1, 3 of 1000
    norms = multi.freqs_x.norm(dim=0)
    assert bool((norms[:4] < 20).all()) and bool((norms[4:] > 50).all())
    assert earth.parse_scales("16, 256") == (16.0, 256.0)
    for bad in ("16,x", "0", "16,-1", "nan"):
        with pytest.raises(ValueError, match="Fourier scales must be"):
            earth.parse_scales(bad)


def test_gate_fades_the_finer_scales_in_towards_the_data():
    net = earth.VelocityMLP(8, 2, 4, "10,1000", seed=0, gate_power=2.0)
    x = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    seen = {}
    hook = net.net[0].register_forward_hook(lambda m, inp, out: seen.update(inp=inp[0]))
    for t in (0.0, 1.0):
        net(x, torch.full((5,), t))
        feats = seen["inp"][:, 3 + 1 + 16 :]  # after x, t and the time sinusoids: sin, cos of x W
        xf = x @ net.freqs_x
        expected = torch.cat([xf.sin(), xf.cos()], -1)
        coarse, fine = [0, 1, 4, 5], [2, 3, 6, 7]  # sin, cos of columns 0-1 (scale 10), 2-3 (1000)
        torch.testing.assert_close(feats[:, coarse], expected[:, coarse])  # never gated
        if t == 1.0:
            torch.testing.assert_close(feats[:, fine], expected[:, fine])  # on at the data
        else:
            assert float(feats[:, fine].abs().max()) < 1e-30  # exp(-99): off at the source
    hook.remove()


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_time_warp_is_the_condot_field_re_timed(power):
    kappa = torch.tensor([0.0, 0.3, 0.9, 0.999, 1.0])
    t = earth.warp_time(kappa, power)
    torch.testing.assert_close(1 - (1 - t) ** power, kappa)  # kappa(t(kappa)) = kappa

    def net(x, t):
        return torch.ones_like(x) * 2

    warped = earth.TimeWarp(net, power)
    x = torch.zeros(5, 3)
    out = warped(x=x, t=t)
    torch.testing.assert_close(out[:, 0], 2 * power * (1 - t) ** (power - 1))  # dkappa/dt
    # a CondOT flow of constant speed 2 covers 2 units of kappa in warped time too
    steps = 2000
    grid = (torch.arange(steps) + 0.5) / steps
    assert abs(float(warped(x=torch.zeros(steps, 3), t=grid)[:, 0].mean()) - 2) < 1e-3


def test_cli_rejects_a_time_warp_below_1_and_bad_scales(tmp_path, capsys):
    csv = _write(tmp_path, "lat,lon\n1,2\n")
    assert earth.main(["--csv", str(csv), "--time-warp", "0.5"]) == 2
    assert "--time-warp must be >= 1" in capsys.readouterr().err
    assert earth.main(["--csv", str(csv), "--fourier-scale", "16,abc"]) == 2
    assert "--fourier-scale: Fourier scales must be" in capsys.readouterr().err


def test_a_non_finite_validation_nll_is_never_selected(tmp_path, capsys, monkeypatch):
    g = torch.Generator().manual_seed(0)
    lat, lon = (
        (torch.rand(100, generator=g) - 0.5) * 120,
        (torch.rand(100, generator=g) - 0.5) * 300,
    )
    csv = _write(tmp_path, "lat,lon\n" + "".join(f"{a:.3f},{b:.3f}\n" for a, b in zip(lat, lon)))
    real_nll = earth.nll

    def fake_nll(model, x, steps, method, **kw):  # every validation blows up (1 step)
        return math.nan if steps == 1 else real_nll(model, x, steps, method, **kw)

    monkeypatch.setattr(earth, "nll", fake_nll)
    args = ["--csv", str(csv), "--steps", "30", "--batch", "32", "--width", "16", "--depth", "2",
            "--eval-every", "10", "--eval-steps", "1", "--test-steps", "2", "--fourier", "4",
            "--fourier-scale", "4,64", "--gate", "--time-warp", "2"]  # fmt: skip
    assert earth.main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["best_step"] == 10 and math.isfinite(
        out["test_nll"]
    )  # the first, kept as a fallback


def test_nll_by_distance_bins_the_events_by_their_nearest_training_event():
    train = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    near = torch.nn.functional.normalize(torch.tensor([[1.0, 1e-4, 0.0]]), dim=-1)  # 0.0057 deg
    far = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0]]), dim=-1)  # 5.7 deg
    x = torch.cat([near, far, far])
    rows = earth.nll_by_distance(torch.tensor([1.0, -2.0, -4.0]), x, train)
    assert [(r["degrees"], r["n"], r["nll"]) for r in rows] == [
        ([0.005, 0.012], 1, -1.0),
        ([1.0, 180.0], 2, 3.0),
    ]
    assert rows[0]["kde_nll"] < rows[1]["kde_nll"]  # the kernel reference is sharp near data
