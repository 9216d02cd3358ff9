"""``geodesic``: the reference's curve helper, on vectors and matrix manifolds."""

from __future__ import annotations

import torch

from fm_riemann import SO3, Sphere, geodesic
from fm_riemann.testing import random_points


def test_matches_the_reference_on_the_sphere():
    from flow_matching.utils.manifolds import Sphere as RefSphere
    from flow_matching.utils.manifolds import geodesic as ref_geodesic

    x, y = random_points(Sphere(), 5), random_points(Sphere(), 5)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    ours = geodesic(Sphere(), x, y)(t)
    assert ours.shape == (5, 7, 3)
    torch.testing.assert_close(ours, ref_geodesic(RefSphere(), x, y)(t))


def test_matrix_points_keep_their_shape_and_hit_both_ends():
    so3 = SO3()
    x, y = random_points(so3, 2), random_points(so3, 2)
    curve = geodesic(so3, x, y)(torch.tensor([0.0, 0.5, 1.0]))
    assert curve.shape == (2, 3, 3, 3)
    torch.testing.assert_close(curve[:, 0], x)
    torch.testing.assert_close(curve[:, -1], y)
    # the midpoint is equidistant from both ends
    torch.testing.assert_close(so3.dist(x, curve[:, 1]), so3.dist(curve[:, 1], y))
