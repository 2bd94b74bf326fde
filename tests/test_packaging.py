"""The version ranges pyproject.toml declares are the ones this environment tests.

Every requirement of the core and of the ``eval``, ``serve`` and ``dev`` extras must be installed
at a version inside its declared range, so a test run is evidence for the ranges we ship.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
TESTED_EXTRAS = ("eval", "serve", "dev")


def _requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in TESTED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.name != "videolmm" and (r.marker is None or r.marker.evaluate({"extra": ""}))]


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_installed_version_is_in_the_declared_range(req: Requirement) -> None:
    try:
        installed = version(req.name)
    except PackageNotFoundError:
        pytest.fail(f"{req.name} is declared ({req}) but not installed")
    assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {req.specifier}"


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    unbounded = [str(r) for r in _requirements() if not any(s.operator in (">=", "==", "~=") for s in r.specifier)]
    assert not unbounded, unbounded
