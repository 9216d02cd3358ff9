r"""Manifolds (mirrors ``flow_matching.utils.manifolds``): geoopt's own, plus safe and new ones.

``Sphere`` (a safe ``geoopt.Sphere``), ``FlatTorus``, ``Euclidean`` (``ndim=1``) and ``SO3`` are
defined here; geoopt's ``PoincareBall``, ``Lorentz``, ``SymmetricPositiveDefinite``,
``Stereographic`` and ``ProductManifold`` are re-exported unchanged. ``Manifold`` is the
reference's four-method base (``expmap``, ``logmap``, ``projx``, ``proju``) as a subclass of
``geoopt.Manifold``; geoopt's own base stays at ``geoopt.Manifold``. ``geodesic(manifold, x, y)``
returns the curve $t \mapsto \exp_x(t \log_x y)$, as the reference's.
"""

from geoopt import (
    Lorentz,
    PoincareBall,
    ProductManifold,
    Stereographic,
    SymmetricPositiveDefinite,
)

from fm_riemann.manifolds.curve import geodesic
from fm_riemann.manifolds.euclidean import Euclidean
from fm_riemann.manifolds.manifold import Manifold
from fm_riemann.manifolds.so3 import SO3
from fm_riemann.manifolds.sphere import Sphere
from fm_riemann.manifolds.torus import FlatTorus

__all__ = [
    "SO3",
    "Euclidean",
    "FlatTorus",
    "Lorentz",
    "Manifold",
    "PoincareBall",
    "ProductManifold",
    "Sphere",
    "Stereographic",
    "SymmetricPositiveDefinite",
    "geodesic",
]
