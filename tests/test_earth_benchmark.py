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
