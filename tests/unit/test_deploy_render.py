"""A small pure-Python kustomize: renders k8s/ overlays without kubectl, plus its own tests.

It understands what k8s/ uses (``resources``, ``configMapGenerator`` with ``behavior``,
strategic-merge patches, JSON 6902 patches with a ``target``, ``images``, ``namespace``) and
fails loudly on anything else, so a manifest change it cannot follow breaks a test instead of
being silently ignored. The other ``test_deploy_*`` modules import the helpers from here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
SECRET_EXAMPLE = K8S / "examples" / "secret.example.yaml"

Obj = dict[str, Any]

KNOWN_KUSTOMIZATION_KEYS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "patches", "images"}
)
CLUSTER_SCOPED_KINDS = frozenset({"Namespace"})


def load_documents(path: Path) -> list[Any]:
    """The YAML documents of ``path``: objects, or a JSON 6902 patch's list of operations."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def load_kustomization(directory: Path) -> Obj:
    (doc,) = load_documents(directory / "kustomization.yaml")
    assert isinstance(doc, dict)
    unknown = set(doc) - KNOWN_KUSTOMIZATION_KEYS
    if unknown:
        raise NotImplementedError(f"{directory}: the test renderer does not know {unknown}")
    kustomization: Obj = doc
    return kustomization


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


def strategic_merge(base: Any, patch: Any) -> Any:
    """Maps merge key by key; lists of named maps merge by ``name``; other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named_maps(base + patch):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = strategic_merge(by_name.get(item["name"], {}), item)
        return list(by_name.values())
    return copy.deepcopy(patch)


def _named_maps(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def apply_json6902(obj: Obj, operations: list[Obj]) -> None:
    for operation in operations:
        *parents, last = [p for p in operation["path"].split("/")[1:]]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if operation["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        elif operation["op"] in ("add", "replace"):
            node[int(last) if isinstance(node, list) else last] = operation["value"]
        elif operation["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise NotImplementedError(f"JSON patch op {operation['op']}")


def _generate_config_maps(doc: Obj, objects: list[Obj]) -> list[Obj]:
    for generator in doc.get("configMapGenerator", []):
        data = dict(line.split("=", 1) for line in generator.get("literals", []))
        behavior = generator.get("behavior", "create")
        if behavior == "create":
            labels = generator.get("options", {}).get("labels", {})
            meta: Obj = {"name": generator["name"], **({"labels": labels} if labels else {})}
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})
            objects[-1]["data"] = data
        elif behavior == "merge":
            existing = find(objects, "ConfigMap", generator["name"])
            existing["data"] = {**existing.get("data", {}), **data}
        else:
            raise NotImplementedError(f"configMapGenerator behavior {behavior}")
    return objects


def _apply_patches(directory: Path, doc: Obj, objects: list[Obj]) -> None:
    for entry in doc.get("patches", []):
        (patch,) = load_documents(directory / entry["path"])
        if "target" in entry:
            target = entry["target"]
            apply_json6902(find(objects, target["kind"], target["name"]), patch)
            continue
        index = objects.index(find(objects, *key_of(patch)))
        objects[index] = strategic_merge(objects[index], patch)


def _set_images(doc: Obj, objects: list[Obj]) -> None:
    images = {image["name"]: image for image in doc.get("images", [])}
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            name = container["image"].split("@")[0].rsplit(":", 1)[0]
            if name in images:
                new = images[name]
                container["image"] = f"{new.get('newName', name)}:{new['newTag']}"


def render(directory: Path) -> list[Obj]:
    """The objects ``kustomize build directory`` would print (generated names unhashed)."""
    doc = load_kustomization(directory)
    objects: list[Obj] = []
    for entry in doc.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else load_documents(path)
    objects = _generate_config_maps(doc, copy.deepcopy(objects))
    _apply_patches(directory, doc, objects)
    _set_images(doc, objects)
    if "namespace" in doc:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"]["namespace"] = doc["namespace"]
    return objects


# --- the renderer's own tests -------------------------------------------------------------


def test_strategic_merge_merges_named_lists_by_name_and_replaces_others() -> None:
    # Given a container with env entries and a list of plain values
    base = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["x"]}
    # When a patch adds one env entry, changes another and replaces the plain list
    patch = {"env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}], "args": ["y"]}
    merged = strategic_merge(base, patch)
    # Then named entries merge by name and the plain list is replaced
    assert merged["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert merged["args"] == ["y"]


def test_json6902_appends_replaces_and_removes() -> None:
    # Given an object with a list
    obj: Obj = {"spec": {"egress": [{"port": 53}], "keep": 1, "drop": 2}}
    # When operations append, replace and remove
    apply_json6902(
        obj,
        [
            {"op": "add", "path": "/spec/egress/-", "value": {"port": 5432}},
            {"op": "replace", "path": "/spec/keep", "value": 5},
            {"op": "remove", "path": "/spec/drop"},
        ],
    )
    # Then the object reflects each operation
    assert obj == {"spec": {"egress": [{"port": 53}, {"port": 5432}], "keep": 5}}


def test_a_patch_for_an_object_missing_from_base_fails(tmp_path: Path) -> None:
    # Given an overlay whose patch names a Deployment the base does not have
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ghost\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources:\n  - cm.yaml\npatches:\n  - path: patch.yaml\n"
    )
    # When it renders / Then the missing target is reported
    with pytest.raises(LookupError, match="Deployment ghost"):
        render(tmp_path)
