"""Names the libraries' docstring examples may use unimported (``pytest --doctest-modules``).

The examples show calls, not imports: ``torch``, ``math``, ``pytest`` and the public names of the
package under test (and of fm_core, for the packages built on it) are in scope, and torch's
generator is seeded so that printed values are reproducible. Only doctests are touched; the unit
tests keep their own seeding. One file for every package: pytest loads it from the repository
root for any test path below it.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

# package -> the modules whose public names its examples see (its declared fm-* dependencies).
NAMESPACES = {
    "fm_core": ("fm_core",),
    "fm_discrete": ("fm_core", "fm_discrete"),
    "fm_riemann": ("fm_core", "fm_riemann"),
    "fm_kernels": ("fm_kernels",),
}


@pytest.fixture(autouse=True)
def _doctest_names(request):
    if type(request.node).__name__ != "DoctestItem":
        return
    package = next((p for p in request.node.path.parts if p in NAMESPACES), None)
    if package is None:
        return
    namespace = request.getfixturevalue("doctest_namespace")
    torch.manual_seed(0)
    namespace.update(torch=torch, pytest=pytest, math=math)
    for module in NAMESPACES[package]:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            namespace.setdefault(name, getattr(mod, name))
