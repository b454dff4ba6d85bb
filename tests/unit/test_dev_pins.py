"""Reproducible checks: every tool of the dev and sandbox extras is pinned to the exact version
the checks ran with (dev-constraints.txt, beside requirements.txt's runtime pins)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DEV_CONSTRAINTS = REPO / "dev-constraints.txt"
RUNTIME_PINS = REPO / "requirements.txt"
PYPROJECT = REPO / "pyproject.toml"
PINNED_EXTRAS = ("dev", "sandbox", "otel")
PROJECT = "provisioner"


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            found[normal(requirement.name)] = spec.version
    return found


def extra_requirements() -> list[Requirement]:
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    return [
        Requirement(text)
        for name in PINNED_EXTRAS
        for text in extras.get(name, [])
        if normal(Requirement(text).name) != PROJECT
    ]


def test_every_extra_requirement_is_pinned_inside_its_range_at_the_installed_version() -> None:
    # Given the dev constraints and the extras' requirements
    pinned = pins(DEV_CONSTRAINTS)
    requirements = extra_requirements()
    assert any(normal(r.name) == "ruff" for r in requirements)
    # When each requirement is looked up
    for requirement in requirements:
        name = normal(requirement.name)
        # Then it is pinned, the pin is inside pyproject's range and is what is installed
        assert name in pinned, f"{name}: add `{name}==<version>` to dev-constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), name
        assert metadata.version(name) == pinned[name], f"{name}: run `make clean .venv/.installed`"


def test_no_package_is_pinned_twice() -> None:
    # Given the runtime pins and the dev constraints / When compared
    both = set(pins(RUNTIME_PINS)) & set(pins(DEV_CONSTRAINTS))
    # Then each package has one pin, in one file
    assert both == set()


def test_what_the_tests_import_is_declared() -> None:
    # Given the dev extra / When its names are read / Then the tests' own imports are there
    declared = {normal(r.name) for r in extra_requirements()}
    assert {"pyyaml", "packaging", "pytest", "hypothesis", "trustme", "requests"} <= declared


def test_the_license_pyproject_announces_is_there() -> None:
    # Given pyproject's license / When the LICENSE file is read / Then it is that license
    assert tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["license"] == "MIT"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
