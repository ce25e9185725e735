"""constraints.txt pins everything pyproject.toml pulls in, and every install uses it.

``make lock`` writes constraints.txt; ``make install``, each image and CI install with
``-c constraints.txt`` (docs/development.md). These tests fail when pyproject.toml
changes (a new dependency, a raised floor, a dropped package) without ``make lock``,
when the venv no longer matches the lock, or when an image installs without it.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# A fresh Python 3.11 venv (make lock's) holds setuptools whether or not anything
# needs it; pip itself is left out of the lock.
VENV_BOOTSTRAP = {canonicalize_name("setuptools")}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins() -> dict[NormalizedName, Version]:
    pins: dict[NormalizedName, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, version = line.split("==")
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _direct_requirements() -> list[Requirement]:
    """The project's dependencies and every extra's, as pyproject.toml states them."""
    lines = list(PYPROJECT["dependencies"])
    for extra in PYPROJECT["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def _installed_closure() -> set[NormalizedName]:
    """Every distribution the direct requirements pull in, from the venv's metadata."""
    seen: set[tuple[NormalizedName, str]] = set()
    names: set[NormalizedName] = set()
    pending = [(r, "") for r in _direct_requirements()]
    while pending:
        requirement, from_extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate(
            {"extra": from_extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        names.add(name)
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            pending += [
                (Requirement(line), extra)
                for line in importlib.metadata.requires(name) or []
            ]
    return names


def test_every_direct_requirement_is_pinned_within_its_range() -> None:
    pins = _pins()

    unpinned = [
        str(r) for r in _direct_requirements() if canonicalize_name(r.name) not in pins
    ]
    outside = [
        f"{r} (pinned {pins[canonicalize_name(r.name)]})"
        for r in _direct_requirements()
        if canonicalize_name(r.name) in pins
        and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]

    assert unpinned == [], "run `make lock`"
    assert outside == [], "run `make lock`"


def test_the_lock_is_exactly_what_the_project_pulls_in_and_the_venv_holds() -> None:
    pins = _pins()
    closure = _installed_closure()

    installed = {
        name: Version(importlib.metadata.version(name)) for name in sorted(closure)
    }

    assert sorted(closure - pins.keys()) == [], "unpinned: run `make lock`"
    assert sorted(pins.keys() - closure - VENV_BOOTSTRAP) == [], (
        "not needed: run `make lock`"
    )
    assert {n: v for n, v in installed.items() if v != pins[n]} == {}, (
        "the venv differs from constraints.txt: run `make install`"
    )


def test_images_and_the_venv_install_with_the_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    dockerfiles = sorted((REPO / "services").glob("*/Dockerfile"))

    assert "!constraints.txt" in dockerignore
    assert re.search(r"pip install [^\n]*-c constraints\.txt -e '\.\[", makefile)
    assert len(dockerfiles) >= 6
    for dockerfile in dockerfiles:
        text = dockerfile.read_text()
        installs = re.findall(r"pip install[^\n]*", text)
        assert re.search(r"^COPY [^\n]*\bconstraints\.txt\b", text, re.M), dockerfile
        assert installs, dockerfile
        assert all("-c constraints.txt" in line for line in installs), dockerfile
