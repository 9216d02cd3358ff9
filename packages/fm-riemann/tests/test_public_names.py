"""The public surface of fm_riemann and its mirror submodules."""

from __future__ import annotations

import fm_riemann
from fm_riemann import loss, manifolds, path, solver, utils

EXPECTED = {
    "SO3", "Euclidean", "FlatTorus", "GeodesicProbPath", "Lorentz", "Manifold", "PoincareBall",
    "ProductManifold", "ProjectToTangent", "RiemannianFlowMatchingLoss", "RiemannianODESolver",
    "Sphere", "Stereographic", "SymmetricPositiveDefinite", "__version__", "geodesic",
}  # fmt: skip


def test_top_level_names():
    assert set(fm_riemann.__all__) == EXPECTED
    for name in fm_riemann.__all__:
        assert hasattr(fm_riemann, name)


def test_mirrors():
    assert path.GeodesicProbPath is fm_riemann.GeodesicProbPath
    assert solver.RiemannianODESolver is fm_riemann.RiemannianODESolver
    assert loss.RiemannianFlowMatchingLoss is fm_riemann.RiemannianFlowMatchingLoss
    assert utils.ProjectToTangent is fm_riemann.ProjectToTangent
    for name in ("Sphere", "FlatTorus", "Euclidean", "SO3", "Manifold", "geodesic"):
        assert getattr(manifolds, name) is getattr(fm_riemann, name)
    for mod in (path, solver, loss, utils, manifolds):
        for name in mod.__all__:
            assert hasattr(mod, name)
