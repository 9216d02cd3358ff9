"""The distributions move together and declare what they import."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "fm-core": ROOT / "packages/fm-core",
    "fm-discrete": ROOT / "packages/fm-discrete",
    "fm-riemann": ROOT / "packages/fm-riemann",
    "fm-kernels": ROOT / "packages/fm-kernels",
    "fm-image": ROOT / "apps/image",
    "fm-text": ROOT / "apps/text",
}
IMPORT_NAME = {dist: dist.replace("-", "_") for dist in FOLDERS}
IMPORT_NAME |= {"fm-image": "fm_image", "fm-text": "fm_text"}
# Imports a package may make without declaring them: optional fast paths, imported lazily and
# guarded (DESIGN.md: fm-core / fm-discrete use fm-kernels when it is importable).
OPTIONAL = {
    "fm-core": {"fm_kernels"},
    "fm-discrete": {"fm_kernels"},
    "fm-image": {"fm_kernels"},
    "fm-text": {"fm_kernels"},
}


def _project(dist):
    return tomllib.loads((FOLDERS[dist] / "pyproject.toml").read_text())["project"]


def _fm_requirements(dist) -> dict[str, str]:
    out = {}
    for req in _project(dist)["dependencies"]:
        m = re.match(r"(fm-[a-z]+)(\[[a-z,]+\])?\s*(.*)", req)  # extras allowed: fm-core[train]
        if m:
            out[m.group(1)] = m.group(3).strip()
    return out


def test_one_version_for_all():
    versions = {dist: _project(dist)["version"] for dist in FOLDERS}
    assert len(set(versions.values())) == 1, versions


@pytest.mark.parametrize("dist", FOLDERS)
def test_siblings_pinned_exactly(dist):
    version = _project(dist)["version"]
    for sibling, spec in _fm_requirements(dist).items():
        assert spec == f"=={version}", f"{dist} pins {sibling}{spec}, expected =={version}"


@pytest.mark.parametrize("dist", FOLDERS)
def test_imports_of_siblings_are_declared(dist):
    """No package imports a sibling that is not in its dependencies (DESIGN.md, rules of the house)."""
    src = FOLDERS[dist] / "src" / IMPORT_NAME[dist]
    declared = {IMPORT_NAME[d] for d in _fm_requirements(dist)} | {IMPORT_NAME[dist]}
    # fm-* dependencies are transitive: fm-text -> fm-discrete -> fm-core.
    frontier = list(_fm_requirements(dist))
    while frontier:
        d = frontier.pop()
        for dd in _fm_requirements(d):
            declared.add(IMPORT_NAME[dd])
            frontier.append(dd)
    allowed = declared | OPTIONAL.get(dist, set())
    for file in src.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top.startswith("fm_") and top in IMPORT_NAME.values():
                    assert top in allowed, f"{file.relative_to(ROOT)} imports {top}, undeclared"


def test_no_package_imports_an_app():
    for dist in ("fm-core", "fm-discrete", "fm-riemann", "fm-kernels"):
        for file in (FOLDERS[dist] / "src").rglob("*.py"):
            text = file.read_text()
            assert "fm_image" not in text and "fm_text" not in text, file


@pytest.mark.parametrize("dist", FOLDERS)
def test_installed_version_matches(dist):
    import importlib

    module = importlib.import_module(IMPORT_NAME[dist])
    assert module.__version__ == _project(dist)["version"]
