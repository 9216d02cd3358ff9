"""Value checks and backward shortcuts of fm-kernels never read a device value while compiling."""

from __future__ import annotations

import torch

from fm_kernels._dispatch import checks_enabled, unit_grad_output


def test_unit_grad_output_is_read_only_in_eager_cpu_mode():
    one = torch.ones(())
    assert unit_grad_output(one)
    assert not unit_grad_output(torch.full((), 2.0))
    assert not unit_grad_output(torch.ones((), device="meta"))  # an accelerator: never read

    def scaled(g):  # what the backward passes do: multiply unless known to be exactly 1
        return g * 5.0 if not unit_grad_output(g) else g

    compiled = torch.compile(scaled, fullgraph=True, backend="aot_eager")
    assert compiled(one).item() == 5.0  # while compiling: not read (no graph break), multiplied
    assert scaled(one).item() == 1.0


def test_checks_enabled_rule():
    assert checks_enabled(torch.zeros(1))
    assert not checks_enabled(torch.zeros(1, device="meta"))
    flags = []

    def probe(x):
        flags.append(checks_enabled(x))
        return x + 1

    torch.compile(probe, fullgraph=True, backend="aot_eager")(torch.zeros(1))
    assert flags == [False]
