"""Name -> method registry behind ``method="..."``; torchdiffeq serves any other name it knows."""

from __future__ import annotations

import importlib

from fm_core.solver.dopri5 import Dopri5
from fm_core.solver.fixed_step import RK4, Euler, FixedStepMethod, Heun2, Midpoint

__all__ = ["METHODS", "TorchdiffeqMethod", "get_method"]

#: The methods implemented here, by name. Each class carries ``order`` and ``stages``.
METHODS: dict[str, type] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun2": Heun2,
    "rk4": RK4,
    "dopri5": Dopri5,
}

_TORCHDIFFEQ_ADAPTIVE = {"dopri8", "bosh3", "fehlberg2", "adaptive_heun", "scipy_solver"}


class TorchdiffeqMethod:
    """A method served by ``torchdiffeq.odeint`` (an optional dependency, imported lazily).

    Args:
        name: a torchdiffeq method name, e.g. ``"dopri8"``, ``"bosh3"``, ``"heun3"``, ``"explicit_adams"``.
    """

    order = None
    stages = None

    def __init__(self, name: str):
        self.name = name
        self.adaptive = name in _TORCHDIFFEQ_ADAPTIVE

    def __repr__(self) -> str:
        return f"TorchdiffeqMethod({self.name!r})"


def _torchdiffeq_methods() -> list[str]:
    try:
        odeint_module = importlib.import_module("torchdiffeq._impl.odeint")
    except ImportError:
        return []
    return sorted(set(getattr(odeint_module, "SOLVERS", {})) - set(METHODS))


def get_method(method: str) -> FixedStepMethod | Dopri5 | TorchdiffeqMethod:
    """Return a fresh method object for ``method``; raise ``ValueError`` for an unknown name.

    Names in ``METHODS`` are implemented here. Any other name is looked up in torchdiffeq when
    it is installed (``pip install torchdiffeq``); otherwise the error says so.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string such as 'euler', got {type(method).__name__}")
    if method in METHODS:
        return METHODS[method]()
    extra = _torchdiffeq_methods()
    if method in extra:
        return TorchdiffeqMethod(method)
    hint = (
        f"; torchdiffeq adds {extra}"
        if extra
        else "; install torchdiffeq (pip install torchdiffeq) for its other methods"
    )
    raise ValueError(f"method must be one of {sorted(METHODS)}{hint}; got {method!r}")
