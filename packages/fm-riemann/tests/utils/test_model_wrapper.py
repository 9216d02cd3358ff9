"""ProjectToTangent."""

from __future__ import annotations

import torch
from torch import nn

from fm_riemann import SO3, ProjectToTangent, Sphere


class Ambient(nn.Module):
    def forward(self, x, t, scale=1.0):
        return scale * (x + 1.0)


def test_output_is_tangent_and_input_projected():
    s = Sphere()
    x = 2 * s.random_uniform(8, 3, dtype=torch.float64)  # off the sphere: projected first
    v = ProjectToTangent(Ambient(), s)(x=x, t=torch.tensor(0.0), scale=3.0)
    assert s.check_vector_on_tangent(s.projx(x), v, atol=1e-10)
    so3 = SO3()
    r = so3.random_uniform(4, dtype=torch.float64)
    assert so3.check_vector_on_tangent(
        r, ProjectToTangent(Ambient(), so3)(x=r, t=torch.tensor(0.0))
    )


def test_projx_can_be_turned_off():
    s = Sphere()
    x = s.random_uniform(4, 3, dtype=torch.float64)
    w = ProjectToTangent(Ambient(), s, projx=False)
    torch.testing.assert_close(w(x=x, t=torch.zeros(4)), s.proju(x, x + 1.0))
