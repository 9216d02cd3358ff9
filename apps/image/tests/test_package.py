"""The fm-image shell installs alone (with its declared dependencies) and imports.

The app itself comes in a later issue; until then the package carries only its version.
"""

from importlib.metadata import requires, version

import fm_image


def test_version_comes_from_the_distribution():
    assert fm_image.__version__ == version("fm-image")


def test_declared_fm_dependency_is_importable():
    fm_deps = [r.split("==")[0] for r in requires("fm-image") if r.startswith("fm-")]
    assert fm_deps, "the app must declare the fm package it builds on"
    for dist in fm_deps:
        __import__(dist.replace("-", "_"))
