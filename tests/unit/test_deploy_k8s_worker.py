"""The rendered worker pod: security, probes, shutdown, and configuration the worker accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_deploy_render import (
    OVERLAYS,
    SECRET_EXAMPLE,
    Obj,
    find,
    load_documents,
    render,
)
from worker.config import (
    DRAIN_TIMEOUT_S,
    HTTP_PORT,
    KNOWN_ENV,
    drain_bound_s,
    load_settings,
    parse_duration_s,
)

IMAGE_UID = 10001  # the Dockerfile's USER
POD_NAME = "provisioner-7d9c-abcde"
OVERLAY_IDS = list(OVERLAYS)


def pod_spec(overlay: Path) -> Obj:
    spec: Obj = find(render(overlay), "Deployment")["spec"]["template"]["spec"]
    return spec


def container(overlay: Path) -> Obj:
    (only,) = pod_spec(overlay)["containers"]
    result: Obj = only
    return result


def config_data(overlay: Path) -> dict[str, str]:
    data: dict[str, str] = find(render(overlay), "ConfigMap")["data"]
    return data


def secret_mount_path(overlay: Path) -> str:
    volumes = {v["name"]: v for v in pod_spec(overlay)["volumes"]}
    for mount in container(overlay)["volumeMounts"]:
        if "secret" in volumes[mount["name"]]:
            path: str = mount["mountPath"]
            return path
    raise AssertionError("no Secret volume is mounted")


def rendered_environment(overlay: Path, secret_dir: Path) -> dict[str, str]:
    """The environment the container would get, *_FILE paths moved under ``secret_dir``."""
    (secret,) = load_documents(SECRET_EXAMPLE)
    for key, value in secret["stringData"].items():
        (secret_dir / key).write_text(value, encoding="utf-8")
    environ = dict(config_data(overlay))
    mount = secret_mount_path(overlay)
    for var in container(overlay)["env"]:
        if "valueFrom" in var:
            environ[var["name"]] = POD_NAME  # only metadata.name is used, see below
        else:
            environ[var["name"]] = var["value"].replace(mount, str(secret_dir))
    return environ


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_pod_and_container_run_locked_down(overlay: Path) -> None:
    # Given the rendered pod / When its security settings are read
    pod, box = pod_spec(overlay), container(overlay)
    pod_ctx, ctx = pod["securityContext"], box["securityContext"]
    # Then it runs as the image's numeric non-root user with nothing extra
    for context in (pod_ctx, ctx):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == IMAGE_UID
        assert context["runAsGroup"] == IMAGE_UID
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx.get("privileged", False) is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    account = find(render(overlay), "ServiceAccount", pod["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_tmp_is_a_writable_empty_dir(overlay: Path) -> None:
    # Given the pod's volumes and the container's mounts
    volumes = {v["name"]: v for v in pod_spec(overlay)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(overlay)["volumeMounts"]}
    # When /tmp is looked up / Then it is an emptyDir (the root filesystem is read-only)
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_resources_request_cpu_and_memory_and_limit_memory(overlay: Path) -> None:
    # Given the container / When its resources are read
    resources = container(overlay)["resources"]
    # Then it requests both and caps memory
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_probes_hit_healthz_and_readyz_on_the_worker_http_port(overlay: Path) -> None:
    # Given the container's ports, probes and configured HTTP port
    box = container(overlay)
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    configured = int(config_data(overlay).get("PROVISIONER_HTTP_PORT", HTTP_PORT))

    # When each probe's target is resolved
    def target(probe: str) -> tuple[str, Any]:
        get = box[probe]["httpGet"]
        return get["path"], ports.get(get["port"], get["port"])

    # Then liveness is /healthz, readiness /readyz, both on the port the worker listens on
    assert target("livenessProbe") == ("/healthz", configured)
    assert target("readinessProbe") == ("/readyz", configured)
    assert target("startupProbe") == ("/healthz", configured)
    service = find(render(overlay), "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_grace_period_outlasts_the_worker_drain(overlay: Path) -> None:
    # Given the drain bound the worker will use: the drain timeout, and at least one
    # execution's worst case (a running call is never handed over)
    data = config_data(overlay)
    configured = data.get("PROVISIONER_DRAIN_TIMEOUT")
    drain_s = parse_duration_s(configured) if configured else DRAIN_TIMEOUT_S
    settings = load_settings({k: v for k, v in data.items() if not k.endswith("_FILE")})
    # When compared with the pod's grace period / Then SIGKILL comes only after the drain
    grace_s = pod_spec(overlay)["terminationGracePeriodSeconds"]
    assert grace_s > drain_s
    assert grace_s > drain_bound_s(settings)


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_every_variable_set_is_one_the_worker_knows(overlay: Path) -> None:
    # Given the variables from the ConfigMap (envFrom) and the container's env
    box = container(overlay)
    config_map = find(render(overlay), "ConfigMap")["metadata"]["name"]
    assert [ref["configMapRef"]["name"] for ref in box["envFrom"]] == [config_map]
    names = set(config_data(overlay)) | {v["name"] for v in box["env"]}
    # When compared with the worker's configuration / Then none is unknown
    assert names - KNOWN_ENV == set()
    # And no setting is given both directly and as a file (the worker refuses that)
    assert {n for n in names if n.endswith("_FILE") and n.removesuffix("_FILE") in names} == set()
    sources = [v["valueFrom"] for v in box["env"] if "valueFrom" in v]
    assert sources == [{"fieldRef": {"fieldPath": "metadata.name"}}]


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_secret_files_come_from_the_mounted_secret_keys(overlay: Path) -> None:
    # Given the Secret example's keys and the Secret volume
    (secret,) = load_documents(SECRET_EXAMPLE)
    volume = next(v for v in pod_spec(overlay)["volumes"] if "secret" in v)
    mount = secret_mount_path(overlay)
    # When each *_FILE variable's path is split into mount and key
    files = {
        v["name"]: v["value"] for v in container(overlay)["env"] if v["name"].endswith("_FILE")
    }
    # Then every file is a key of that Secret, under its read-only mount
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert {"PROVISIONER_AMQP_URL_FILE", "PROVISIONER_API_USER_FILE"} <= set(files)
    assert {"PROVISIONER_API_KEY_FILE", "SENTRY_DSN_FILE"} <= set(files)
    for path in files.values():
        directory, key = path.rsplit("/", 1)
        assert directory == mount
        assert key in secret["stringData"]


def test_dev_worker_starts_with_sqlite_on_the_writable_volume(tmp_path: Path) -> None:
    # Given the dev overlay's environment with the example secrets as files
    environ = rendered_environment(OVERLAYS["dev"], tmp_path)
    # When the worker loads its settings from it
    settings = load_settings(environ)
    # Then the store is SQLite on a mounted emptyDir, not on the read-only root filesystem
    assert settings.store_url.startswith("sqlite:////")
    db_dir = settings.store_url.removeprefix("sqlite:///").rsplit("/", 1)[0]
    volumes = {v["name"]: v for v in pod_spec(OVERLAYS["dev"])["volumes"]}
    mounted = {m["mountPath"]: m["name"] for m in container(OVERLAYS["dev"])["volumeMounts"]}
    assert "emptyDir" in volumes[mounted[db_dir]]
    assert settings.worker_id == POD_NAME
    assert settings.api_user == "REPLACE_ME"


def test_prod_worker_starts_with_the_shared_postgresql_store(tmp_path: Path) -> None:
    # Given the prod overlay's environment with the example secrets as files
    environ = rendered_environment(OVERLAYS["prod"], tmp_path)
    # When the worker loads its settings from it
    settings = load_settings(environ)
    # Then replicas share one PostgreSQL store, read from the Secret, and secrets are read
    assert settings.store_url.startswith("postgresql://")
    assert "PROVISIONER_STORE_URL" not in environ
    assert settings.amqp_url.startswith(("amqp://", "amqps://"))
    assert settings.sentry_dsn == ""
    assert "REPLACE_ME" not in repr(settings)


# A stock PostgreSQL: max_connections 100, of which superuser_reserved_connections keeps 3.
STOCK_POSTGRES_CONNECTIONS = 100 - 3


def test_prod_at_its_most_replicas_fits_a_stock_postgresql(tmp_path: Path) -> None:
    # Given the prod overlay's worker settings and its replica bound
    settings = load_settings(rendered_environment(OVERLAYS["prod"], tmp_path))
    replicas = find(render(OVERLAYS["prod"]), "ScaledObject")["spec"]["maxReplicaCount"]
    # When every replica holds its whole pool in every process
    connections = replicas * settings.processes * settings.store_connections
    # Then the sum stays within a stock server's connections, whatever the concurrency
    assert replicas == settings.partitions  # the cap: more processes than partitions idle
    assert connections <= STOCK_POSTGRES_CONNECTIONS
    assert settings.store_connections < settings.pool_threads


def test_network_policy_admits_metrics_only_and_egresses_to_what_the_worker_uses() -> None:
    # Given the prod NetworkPolicy / When its rules are read
    policy = find(render(OVERLAYS["prod"]), "NetworkPolicy")["spec"]
    ingress_ports = [p["port"] for rule in policy["ingress"] for p in rule["ports"]]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    # Then only the metrics port is reachable, and egress covers DNS, AMQP, HTTPS, PostgreSQL
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert ingress_ports == [HTTP_PORT]
    assert egress_ports == {53, 5671, 5672, 443, 5432}
    dev_policy = find(render(OVERLAYS["dev"]), "NetworkPolicy")["spec"]
    assert 5432 not in {p["port"] for rule in dev_policy["egress"] for p in rule["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=OVERLAY_IDS)
def test_disruption_budget_and_policy_select_the_worker_pods(overlay: Path) -> None:
    # Given the pod labels / When the PDB, NetworkPolicy and Service selectors are read
    objects = render(overlay)
    labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = find(objects, "PodDisruptionBudget")["spec"]
    selectors = [
        pdb["selector"]["matchLabels"],
        find(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        find(objects, "Service")["spec"]["selector"],
    ]
    # Then each selects the worker, and a drain evicts one pod at a time
    assert pdb["maxUnavailable"] == 1
    for selector in selectors:
        assert selector.items() <= labels.items()
