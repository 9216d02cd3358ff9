"""fm-text installs with its declared dependencies, imports, and exposes its console script."""

from importlib.metadata import entry_points, requires, version

import fm_text


def test_version_comes_from_the_distribution():
    assert fm_text.__version__ == version("fm-text")


def test_declared_fm_dependencies_are_importable():
    reqs = [r for r in requires("fm-text") if r.startswith("fm-")]
    fm_deps = [r.split("==")[0].split("[")[0] for r in reqs if "extra ==" not in r]
    assert set(fm_deps) == {"fm-core", "fm-discrete"}
    # fm-kernels is optional (the fused loss): the kernels extra, and the test extra runs it.
    optional = {r.split("==")[0] for r in reqs if "extra ==" in r}
    assert optional == {"fm-kernels"}
    for dist in [*fm_deps, "fm-kernels"]:
        __import__(dist.replace("-", "_"))
    # fm-core[train] is declared: the kit's own dependencies are installed with fm-text.
    for module in ("safetensors.torch", "tqdm", "matplotlib"):
        __import__(module)


def test_console_script():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["fm-text"] == "fm_text.cli:entry_point"
