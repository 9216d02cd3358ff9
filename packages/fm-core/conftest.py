"""Names the docstring examples of fm_core may use unimported (``pytest --doctest-modules``).

The examples show calls, not imports: ``torch``, ``math``, ``pytest`` and the public names of
fm_core are in scope, and torch's generator is seeded so that printed values are
reproducible. Only doctests are touched; the unit tests keep their own seeding.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

MODULES = ("fm_core",)


@pytest.fixture(autouse=True)
def _doctest_names(request):
    if type(request.node).__name__ != "DoctestItem":
        return
    namespace = request.getfixturevalue("doctest_namespace")
    torch.manual_seed(0)
    namespace.update(torch=torch, pytest=pytest, math=math)
    for module in MODULES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            namespace.setdefault(name, getattr(mod, name))
