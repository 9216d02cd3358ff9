"""Flow matching on Riemannian manifolds through geoopt: geodesic paths, Riemannian ODE solver and likelihoods.

This package is a shell until its issue lands: it carries a version and nothing else yet.
"""

from importlib.metadata import version as _version

__version__ = _version("fm-riemann")
__all__ = ["__version__"]
