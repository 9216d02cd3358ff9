"""Test, lint and docs sessions for the fm monorepo.

``nox`` runs the default set (every package's tests, the cross-package tests, lint and docs);
``nox -l`` lists the sessions; ``nox -s "tests(package='fm-core')" -- -k affine`` runs one test.

Each package's session installs only that package and its declared fm-* dependencies into a fresh
virtual environment: an undeclared import fails there, not in a user's environment.
"""

from __future__ import annotations

import nox

# The one place torch is pinned. On the development machines this resolves to a CPU wheel that
# lies on disk; an unpinned torch resolves to a CUDA build of several GB.
TORCH = "torch==2.13.0"

# distribution -> (source folder, fm-* dependencies in install order)
PACKAGES: dict[str, tuple[str, list[str]]] = {
    "fm-core": ("packages/fm-core", []),
    "fm-discrete": ("packages/fm-discrete", ["fm-core"]),
    "fm-riemann": ("packages/fm-riemann", ["fm-core"]),
    "fm-kernels": ("packages/fm-kernels", []),
    "fm-image": ("apps/image", ["fm-core", "fm-discrete"]),
    "fm-text": ("apps/text", ["fm-core", "fm-discrete", "fm-kernels"]),  # kernels: [test] extra
}

DOCS_REQUIREMENTS = [
    "mkdocs==1.6.1",
    "mkdocs-material==9.8.1",
    "mkdocstrings==1.0.8",
    "mkdocstrings-python==2.0.11",
]
RUFF = "ruff==0.17.6"

nox.options.sessions = ["tests", "cross", "lint", "docs"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"


def _install(session: nox.Session, *dists: str, extras: str = "test") -> None:
    """Install torch from its pin, then the given fm-* distributions (local folders) in one resolve."""
    session.install(TORCH)
    folders = []
    for dist in dists:
        folder, deps = PACKAGES[dist]
        folders += [PACKAGES[d][0] for d in deps]
        folders.append(f"{folder}[{extras}]" if extras else folder)
    # One pip call, so pip takes sibling pins (fm-core==X) from these folders, not from PyPI.
    session.install(*dict.fromkeys(folders))


@nox.session
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, with only that package and its declared dependencies installed."""
    folder, _ = PACKAGES[package]
    _install(session, package)
    # Triton kernels run under the CPU interpreter (fm-text's fused loss is compared through it).
    env = {"TRITON_INTERPRET": "1"} if package in ("fm-kernels", "fm-text") else {}
    # Libraries: every `>>>` example in their docstrings runs too (names in the root conftest.py).
    doctests = [f"{folder}/src", "--doctest-modules"] if folder.startswith("packages/") else []
    session.run("pytest", f"{folder}/tests", *doctests, *(session.posargs or ["-q"]), env=env)


@nox.session
def cross(session: nox.Session) -> None:
    """Cross-package tests (tests/): everything installed, Triton kernels in interpreter mode."""
    _install(session, *PACKAGES)
    session.run("pytest", "tests", *(session.posargs or ["-q"]), env={"TRITON_INTERPRET": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation strictly (warnings are errors). Docstrings are read statically."""
    session.install(*DOCS_REQUIREMENTS)
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def demo(session: nox.Session) -> None:
    """Train, sample and evaluate fm-image on scikit-learn's digits; writes demo-digits/.

    The budget is a fixed number of steps (10 000: the same model on any machine); training took
    133 s on an idle 2-core CPU (benchmarks/RESULTS.md). ``-- --out DIR --steps N`` changes them.
    """
    _install(session, "fm-image", extras="")
    args = session.posargs or ["--out", "demo-digits"]
    session.run("fm-image", "demo", *args)


@nox.session
def quickstart(session: nox.Session) -> None:
    """Train a flow on a 2-D checkerboard (about a minute on 2 CPU cores) and write a PNG."""
    _install(session, "fm-core", extras="")
    session.install("matplotlib>=3.7")
    session.run("python", "examples/quickstart_2d.py", *session.posargs)
