"""fm-image installs with its declared dependencies, imports, and exposes its console script."""

from importlib.metadata import entry_points, requires, version

import fm_image


def test_version_comes_from_the_distribution():
    assert fm_image.__version__ == version("fm-image")


def test_declared_fm_dependencies_are_importable():
    fm_deps = [r.split("==")[0].split("[")[0] for r in requires("fm-image") if r.startswith("fm-")]
    assert sorted(fm_deps) == ["fm-core", "fm-discrete"]
    for dist in fm_deps:
        __import__(dist.replace("-", "_"))


def test_console_script_points_at_the_cli():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "fm-image"]
    assert script.value == "fm_image.cli:entry_point"
    assert callable(script.load())
