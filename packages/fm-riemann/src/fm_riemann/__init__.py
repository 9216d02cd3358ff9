"""fm-riemann: flow matching on Riemannian manifolds through geoopt.

Geodesic probability paths, a Riemannian ODE solver with likelihoods, a tangent-projecting model
wrapper, the Riemannian FM loss, and manifolds geoopt lacks or gets unsafe (``FlatTorus``,
``SO3``, a NaN-free ``Sphere``). Every public name is importable from here and from the mirror
submodules ``fm_riemann.path``, ``fm_riemann.solver``, ``fm_riemann.manifolds``, ``fm_riemann.loss``.
"""

from importlib.metadata import version as _version

from fm_riemann.loss import RiemannianFlowMatchingLoss
from fm_riemann.manifolds import (
    SO3,
    Euclidean,
    FlatTorus,
    Lorentz,
    Manifold,
    PoincareBall,
    ProductManifold,
    Sphere,
    Stereographic,
    SymmetricPositiveDefinite,
    geodesic,
)
from fm_riemann.path import GeodesicProbPath
from fm_riemann.solver import RiemannianODESolver
from fm_riemann.utils import ProjectToTangent

__version__ = _version("fm-riemann")

__all__ = [
    "SO3",
    "Euclidean",
    "FlatTorus",
    "GeodesicProbPath",
    "Lorentz",
    "Manifold",
    "PoincareBall",
    "ProductManifold",
    "ProjectToTangent",
    "RiemannianFlowMatchingLoss",
    "RiemannianODESolver",
    "Sphere",
    "Stereographic",
    "SymmetricPositiveDefinite",
    "__version__",
    "geodesic",
]
