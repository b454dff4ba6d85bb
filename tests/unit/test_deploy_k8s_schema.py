"""The manifests as files: yamllint, the Kubernetes schema (strict), the Secret example."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version
from yamllint import linter  # type: ignore[import-untyped]
from yamllint.config import YamlLintConfig  # type: ignore[import-untyped]

from tests.unit.test_deploy_render import (
    BASE,
    K8S,
    OVERLAYS,
    SECRET_EXAMPLE,
    Obj,
    load_documents,
    render,
)

YAMLLINT_CONFIG = K8S / ".yamllint"
CUSTOM_API_GROUPS = ("keda.sh/",)  # checked by test_deploy_keda.py, no schema ships for them
PLACEHOLDER = "REPLACE_ME"
BASE64_BLOB = re.compile(r"^[A-Za-z0-9+/]{16,}={0,2}$")


def every_yaml_file() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def built_in_objects() -> list[tuple[str, Obj]]:
    """(label, object) for every object of a built-in kind in base, the overlays, the example."""
    found = [(f"base {o['kind']}", o) for o in render(BASE)]
    for name, overlay in OVERLAYS.items():
        found += [(f"{name} {o['kind']}", o) for o in render(overlay)]
    found += [(f"example {o['kind']}", o) for o in load_documents(SECRET_EXAMPLE)]
    return [(label, o) for label, o in found if not o["apiVersion"].startswith(CUSTOM_API_GROUPS)]


def test_yamllint_passes_over_k8s() -> None:
    # Given the repository's yamllint configuration for k8s/
    config = YamlLintConfig(file=str(YAMLLINT_CONFIG))
    # When every YAML file under k8s/ is linted
    problems = [
        f"{path.relative_to(K8S)}:{p.line}: {p.desc} ({p.rule})"
        for path in every_yaml_file()
        for p in linter.run(path.read_text(encoding="utf-8"), config, str(path))
    ]
    # Then there is nothing to report
    assert len(every_yaml_file()) >= 10
    assert problems == []


def test_yamllint_configuration_does_catch_problems() -> None:
    # Given the same configuration / When a badly formed manifest is linted
    config = YamlLintConfig(file=str(YAMLLINT_CONFIG))
    bad = "kind: ConfigMap\nkind: Secret\nmetadata:\n   name: x   \n"
    rules = {p.rule for p in linter.run(bad, config)}
    # Then duplicate keys and trailing spaces are reported
    assert {"key-duplicates", "trailing-spaces"} <= rules


def test_every_built_in_kind_is_valid_against_the_kubernetes_schema_strictly() -> None:
    # Given every object of a built-in kind, from base, both overlays and the Secret example
    objects = built_in_objects()
    # When each is validated in strict mode (unknown fields are errors)
    failures = []
    for label, obj in objects:
        try:
            kubernetes_validate.validate(obj, latest_version(), strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            failures.append(f"{label} {obj['metadata']['name']}: {str(e).splitlines()[0]}")
    # Then all pass, and the kinds that matter were among them
    assert failures == []
    kinds = {obj["kind"] for _, obj in objects}
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount", "Secret"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy", "Namespace"} <= kinds


def test_strict_validation_rejects_an_unknown_field() -> None:
    # Given the rendered Deployment with a misspelt field
    deployment = next(o for _, o in built_in_objects() if o["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    # When validated / Then strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def test_secret_example_holds_placeholders_only() -> None:
    # Given the Secret example
    (secret,) = load_documents(SECRET_EXAMPLE)
    # When its values are inspected
    values = secret.get("stringData", {})
    # Then nothing is base64-encoded, and every non-empty value is a placeholder
    assert "data" not in secret
    assert values
    assert [k for k, v in values.items() if v and PLACEHOLDER not in v] == []
    for key, value in values.items():
        for word in re.split(r"[:/@]", value):
            assert not _decodes_as_base64(word), f"{key} looks like a real encoded value"


def _decodes_as_base64(word: str) -> bool:
    if not BASE64_BLOB.match(word) or PLACEHOLDER in word:
        return False
    try:
        base64.b64decode(word, validate=True)
    except binascii.Error:
        return False
    return True


def test_no_manifest_outside_the_example_carries_a_secret() -> None:
    # Given every manifest except the Secret example
    manifests = [p for p in every_yaml_file() if p != SECRET_EXAMPLE]
    # When their kinds are collected
    docs = [doc for p in manifests for doc in load_documents(p)]
    kinds = {doc.get("kind") for doc in docs if isinstance(doc, dict)}
    # Then no Secret is applied by kustomize: real secrets are created out of band
    assert "Deployment" in kinds
    assert "Secret" not in kinds
