"""The kustomizations: every reference resolves, every patch has a target, overlays render.

The pure-Python render (test_deploy_render.py) always runs; ``kubectl kustomize`` runs too when
a kubectl with Kustomize >= 4 is installed, and its output must equal the Python render.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.unit.test_deploy_render import (
    BASE,
    OVERLAYS,
    Obj,
    find,
    key_of,
    load_documents,
    load_kustomization,
    referenced_paths,
    render,
)

KUSTOMIZE_MIN_MAJOR = 4
KUBECTL_TIMEOUT_S = 60
GENERATED_NAME_HASH = re.compile(r"-[a-z0-9]{10}$")
GENERATED_CONFIG_MAP = "provisioner-config"


def kubectl_with_kustomize() -> tuple[str | None, str]:
    """The kubectl path (or None) and why it cannot be used."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None, "kubectl is not installed"
    done = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )
    try:
        version = json.loads(done.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        return None, f"kubectl did not report its version: {done.stderr.strip()}"
    match = re.match(r"v?(\d+)\.", version)
    if not match or int(match.group(1)) < KUSTOMIZE_MIN_MAJOR:
        return None, f"kubectl's Kustomize {version or 'unknown'} is older than v4"
    return kubectl, ""


@pytest.mark.parametrize("directory", [BASE, *OVERLAYS.values()], ids=["base", *OVERLAYS])
def test_every_file_a_kustomization_references_exists(directory: Path) -> None:
    # Given a kustomization / When its references are resolved
    missing = [str(p) for p in referenced_paths(directory) if not p.exists()]
    # Then every one of them is there
    assert missing == []


def test_every_manifest_in_base_is_listed_in_its_kustomization() -> None:
    # Given the manifest files in base/ / When compared with the kustomization's resources
    listed = set(load_kustomization(BASE)["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    # Then none is forgotten (a forgotten file would never be applied)
    assert on_disk == listed


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=list(OVERLAYS))
def test_every_overlay_patch_targets_an_object_of_base(overlay: Path) -> None:
    # Given the objects of base
    base_keys = {key_of(obj) for obj in render(BASE)}
    # When each patch of the overlay names its target
    targets = []
    for entry in load_kustomization(overlay).get("patches", []):
        if "target" in entry:
            targets.append((entry["target"]["kind"], entry["target"]["name"]))
        else:
            (patch,) = load_documents(overlay / entry["path"])
            targets.append(key_of(patch))
    # Then every target exists in base
    assert targets
    assert [t for t in targets if t not in base_keys] == []


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=list(OVERLAYS))
def test_overlay_renders_the_whole_worker(overlay: Path) -> None:
    # Given an overlay / When rendered
    objects = render(overlay)
    namespace = load_kustomization(overlay)["namespace"]
    # Then it holds one of each object the worker needs, all in the overlay's namespace
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ScaledObject",
            "Service",
            "ServiceAccount",
            "TriggerAuthentication",
        ]
    )
    assert find(objects, "Namespace")["metadata"]["name"] == namespace
    assert {o["metadata"].get("namespace", namespace) for o in objects} == {namespace}
    image = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("registry.example.com/provisioner:")


def _canonical(value: Any) -> Any:
    """Order-free form: named lists sorted by name, generated ConfigMap names unhashed."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            return sorted(items, key=lambda i: str(i["name"]))
        return items
    if isinstance(value, str) and value.startswith(GENERATED_CONFIG_MAP):
        return GENERATED_NAME_HASH.sub("", value)
    return value


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=list(OVERLAYS))
def test_kubectl_kustomize_renders_the_overlay_like_the_python_render(overlay: Path) -> None:
    # Given a kubectl with Kustomize >= 4 (skipped, saying why, when there is none)
    kubectl, reason = kubectl_with_kustomize()
    if kubectl is None:
        pytest.skip(f"kustomize render not checked: {reason}; the Python render still ran")
    # When kubectl renders the overlay
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered: list[Obj] = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    # Then the generated ConfigMap carries a content hash (config changes roll the pods)
    config_map = find(rendered, "ConfigMap")["metadata"]["name"]
    assert GENERATED_NAME_HASH.search(config_map), config_map
    # And the objects equal the Python render, which the other deploy tests inspect
    by_key = {key_of(_canonical(o)): _canonical(o) for o in rendered}
    expected = {key_of(_canonical(o)): _canonical(o) for o in render(overlay)}
    assert by_key == expected
