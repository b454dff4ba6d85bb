"""The kustomizations: every reference resolves, every patch has a target, overlays render
(with the real ``kubectl kustomize``, see test_deploy_render.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_deploy_render import (
    BASE,
    OVERLAYS,
    find,
    key_of,
    load_documents,
    load_kustomization,
    referenced_paths,
    render,
)

GENERATED_NAME_HASH = re.compile(r"-[a-z0-9]{10}$")
GENERATED_CONFIG_MAP = "provisioner-config"


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


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=list(OVERLAYS))
def test_the_generated_config_map_is_named_by_its_content_and_the_pod_uses_it(
    overlay: Path,
) -> None:
    # Given the rendered overlay
    objects = render(overlay)
    # When the generated ConfigMap's name and the pod's reference to it are read
    name = find(objects, "ConfigMap")["metadata"]["name"]
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    references = [ref["configMapRef"]["name"] for ref in pod["containers"][0]["envFrom"]]
    # Then the name carries a content hash (a configuration change rolls the pods)
    assert name.startswith(GENERATED_CONFIG_MAP)
    assert GENERATED_NAME_HASH.search(name), name
    assert references == [name]
