"""A fresh machine: the Makefile's setup scripts say what to install when they cannot install it
(not root). Run as the unprivileged ``nobody`` through setpriv, on a copy of scripts/ anyone can
read."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
SCRIPT_TIMEOUT_S = 30
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
NO_VENV_PYTHON = """#!/bin/sh
# A Python that reports a good version but cannot create a virtual environment.
case "$1" in -c) exit 0 ;; *) echo "ensurepip is not available" >&2; exit 1 ;; esac
"""


@pytest.fixture
def copy_for_nobody() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not can_become_nobody():
        pytest.skip("needs root and setpriv to run the scripts as an unprivileged user")
    root = Path(tempfile.mkdtemp(prefix="setup-scripts-"))
    try:
        shutil.copytree(REPO / "scripts", root / "scripts")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def can_become_nobody() -> bool:
    """False in a user namespace that does not map the unprivileged user."""
    probe = [*AS_NOBODY, "true"]
    return subprocess.run(probe, capture_output=True, timeout=SCRIPT_TIMEOUT_S).returncode == 0


def run_as_nobody(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, *argv],
        cwd=root,
        env={"PATH": f"{root}:/usr/bin:/bin", "HOME": str(root)},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )


def test_without_python_a_user_is_told_which_packages_to_install(copy_for_nobody: Path) -> None:
    # Given a user (not root) and no such interpreter
    # When the venv script runs
    done = run_as_nobody(copy_for_nobody, "bash", "scripts/venv.sh", "no-such-python3", "venv")
    # Then it stops and names the packages and the command
    assert done.returncode == 1
    assert "as root, run: apt-get install python3 python3-venv" in done.stderr


def test_a_python_that_cannot_create_a_venv_is_named(copy_for_nobody: Path) -> None:
    # Given an interpreter outside Debian's that cannot create virtual environments
    stub = copy_for_nobody / "stub-python3"
    stub.write_text(NO_VENV_PYTHON)
    stub.chmod(0o755)
    # When the venv script runs as a user
    done = run_as_nobody(copy_for_nobody, "bash", "scripts/venv.sh", "stub-python3", "venv")
    # Then it says what is missing, and leaves no half-made environment behind
    assert done.returncode == 1
    assert "stub-python3 cannot create a virtual environment" in done.stderr
    assert not (copy_for_nobody / "venv").exists()
