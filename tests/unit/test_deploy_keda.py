"""The KEDA objects: no schema ships for them, so their documented shape is asserted here."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.unit.test_deploy_render import (
    BASE,
    OVERLAYS,
    SECRET_EXAMPLE,
    Obj,
    find,
    load_documents,
    render,
)
from worker.broker.addresses import check_urls
from worker.broker.topology import Topology
from worker.config import load_settings

KEDA_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_SPEC_FIELDS = frozenset(
    {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }
)
SCALE_TARGET_FIELDS = frozenset({"apiVersion", "kind", "name", "envSourceContainerName"})
TRIGGER_FIELDS = frozenset({"type", "name", "metadata", "authenticationRef", "metricType"})
RABBITMQ_METADATA_FIELDS = frozenset(
    {
        "host",
        "hostFromEnv",
        "usernameFromEnv",
        "passwordFromEnv",
        "protocol",
        "mode",
        "value",
        "activationValue",
        "queueName",
        "vhostName",
        "useRegex",
        "excludeUnacknowledged",
        "pageSize",
        "operation",
        "timeout",
        "unsafeSsl",
    }
)
RABBITMQ_MODES = frozenset({"QueueLength", "MessageRate"})
SECRET_TARGET_FIELDS = frozenset({"parameter", "name", "key"})
ALL_RENDERS = {"base": BASE, **OVERLAYS}


def scaled_object(objects: list[Obj]) -> Obj:
    return find(objects, "ScaledObject")


def rabbitmq_trigger(objects: list[Obj]) -> Obj:
    (trigger,) = scaled_object(objects)["spec"]["triggers"]
    result: Obj = trigger
    return result


@pytest.mark.parametrize("directory", ALL_RENDERS.values(), ids=list(ALL_RENDERS))
def test_scaled_object_uses_only_documented_fields_and_targets_the_deployment(
    directory: Path,
) -> None:
    # Given the rendered objects
    objects = render(directory)
    scaled = scaled_object(objects)
    # When the ScaledObject's spec and target are read
    spec, target = scaled["spec"], scaled["spec"]["scaleTargetRef"]
    # Then every field is a documented one and the target is this Deployment
    assert scaled["apiVersion"] == KEDA_API_VERSION
    assert set(spec) <= SCALED_OBJECT_SPEC_FIELDS
    assert set(target) <= SCALE_TARGET_FIELDS
    assert (target.get("kind", "Deployment"), target.get("apiVersion", "apps/v1")) == (
        "Deployment",
        "apps/v1",
    )
    deployment = find(objects, "Deployment", target["name"])
    # And the Deployment leaves its replica count to KEDA
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("directory", ALL_RENDERS.values(), ids=list(ALL_RENDERS))
def test_rabbitmq_trigger_watches_the_commands_queue_by_length(directory: Path) -> None:
    # Given the trigger and the worker's prefix from the ConfigMap
    objects = render(directory)
    trigger = rabbitmq_trigger(objects)
    metadata = trigger["metadata"]
    settings = load_settings(find(objects, "ConfigMap")["data"])
    # When its metadata is read
    topology = Topology(settings.prefix, settings.retry_delays_s, 1, settings.partitions)
    watched = [topology.commands_queue, *topology.partition_queues]
    others = [*topology.retry_queues, topology.dead_letter_queue]
    # Then it is a documented rabbitmq trigger summing the intake and its partitions
    assert set(trigger) <= TRIGGER_FIELDS
    assert trigger["type"] == "rabbitmq"
    assert set(metadata) <= RABBITMQ_METADATA_FIELDS
    assert metadata["mode"] in RABBITMQ_MODES
    assert metadata["mode"] == "QueueLength"
    assert (metadata["useRegex"], metadata["operation"]) == ("true", "sum")
    assert [q for q in watched if not re.fullmatch(metadata["queueName"], q)] == []
    assert [q for q in others if re.fullmatch(metadata["queueName"], q)] == []
    assert metadata["protocol"] == "http"  # regex and sum need the management API
    # And every value is a string (KEDA refuses numbers), the target a positive number
    assert [k for k, v in metadata.items() if not isinstance(v, str)] == []
    assert float(metadata["value"]) > 0
    # And the credentials are not inline: they come from the TriggerAuthentication
    assert "host" not in metadata


@pytest.mark.parametrize("directory", ALL_RENDERS.values(), ids=list(ALL_RENDERS))
def test_trigger_authentication_reads_one_broker_url_from_the_worker_secret(
    directory: Path,
) -> None:
    # Given the trigger's authentication reference and the Secret example
    objects = render(directory)
    reference = rabbitmq_trigger(objects)["authenticationRef"]
    (secret,) = load_documents(SECRET_EXAMPLE)
    # When the named TriggerAuthentication is looked up
    auth = find(objects, "TriggerAuthentication", reference["name"])
    # Then it exists, has the documented shape and maps "host" to a key of the Secret
    assert auth["apiVersion"] == KEDA_API_VERSION
    assert set(reference) <= {"name", "kind"}
    assert reference.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
    assert set(auth["spec"]) == {"secretTargetRef"}
    (ref,) = auth["spec"]["secretTargetRef"]
    assert set(ref) == SECRET_TARGET_FIELDS
    assert ref["parameter"] == "host"
    assert ref["name"] == secret["metadata"]["name"]
    # And that key holds one URL (KEDA takes a single host), while the worker's own key,
    # read from the same Secret, may list every node of the cluster
    container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    amqp_file = next(v["value"] for v in container["env"] if v["name"].endswith("AMQP_URL_FILE"))
    worker_key = amqp_file.rsplit("/", 1)[1]
    assert ref["key"] != worker_key
    assert urlsplit(secret["stringData"][ref["key"]]).scheme in ("http", "https")
    assert len(check_urls(secret["stringData"][worker_key])) == 3


@pytest.mark.parametrize("overlay", OVERLAYS.values(), ids=list(OVERLAYS))
def test_more_than_one_replica_only_with_the_shared_postgresql_store(overlay: Path) -> None:
    # Given the overlay's replica bounds and store configuration
    objects = render(overlay)
    spec = scaled_object(objects)["spec"]
    container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env_names = {v["name"] for v in container["env"]}
    store_url = find(objects, "ConfigMap")["data"].get("PROVISIONER_STORE_URL", "")
    # When they are compared / Then bounds are sane, and many replicas imply PostgreSQL
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    if spec["maxReplicaCount"] > 1:
        assert "PROVISIONER_STORE_URL_FILE" in env_names
        assert store_url == ""
    else:
        assert store_url.startswith("sqlite:////")


def test_no_more_worker_processes_than_partitions() -> None:
    # Given the prod overlay's replica bound and the worker's settings
    objects = render(OVERLAYS["prod"])
    settings = load_settings(find(objects, "ConfigMap")["data"])
    # When the processes at the largest scale are counted
    processes = scaled_object(objects)["spec"]["maxReplicaCount"] * settings.processes
    # Then each can own a partition (more would idle)
    assert processes <= settings.partitions


def test_overlays_set_their_own_replica_bounds() -> None:
    # Given both overlays / When their bounds are read
    dev = scaled_object(render(OVERLAYS["dev"]))["spec"]
    prod = scaled_object(render(OVERLAYS["prod"]))["spec"]
    # Then dev is one SQLite worker and prod scales out from two
    assert (dev["minReplicaCount"], dev["maxReplicaCount"]) == (1, 1)
    assert prod["minReplicaCount"] >= 2
    assert prod["maxReplicaCount"] > prod["minReplicaCount"]
