"""The image's start command, run for real: SIGTERM through tini reaches Python and drains.

No Docker engine here, so the final stage's ENTRYPOINT + CMD run directly, configured the way
the Deployment configures the pod (secrets as files read through ``*_FILE``), against the real
broker and the sandbox. Needs the ``tini`` Debian package (the image's init); skipped without.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.wait import wait_until
from tests.integration.harness import WorkerRig, customer_command
from tests.unit.test_deploy_image import final_stage

pytestmark = pytest.mark.integration

IMAGE_TINI = "/usr/bin/tini"
SLOW_API_LATENCY_MS = 500
EXIT_WAIT_S = 30
USERNAME = "entrypoint-drain"
KEY = "k-entrypoint-drain"
SECRET_SETTINGS = {
    "PROVISIONER_AMQP_URL": "amqp_url",
    "PROVISIONER_API_USER": "api_user",
    "PROVISIONER_API_KEY": "api_key",
}


def image_argv() -> list[str]:
    """ENTRYPOINT + CMD of the final stage, as the container runtime would exec them."""
    stage = final_stage()
    argv: list[str] = json.loads(stage.values("ENTRYPOINT")[-1])
    argv += json.loads(stage.values("CMD")[-1])
    return argv


def pod_like_env(rig: WorkerRig, secret_dir: Path) -> dict[str, str]:
    """The rig's settings, with the secrets moved into files like the mounted Secret."""
    env = rig.env()
    for variable, key in SECRET_SETTINGS.items():
        (secret_dir / key).write_text(env.pop(variable), encoding="utf-8")
        env[f"{variable}_FILE"] = str(secret_dir / key)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def rig(amqp_url: str, prefix: str, sandbox: Any, tmp_path: Path) -> Any:
    rig = WorkerRig(amqp_url, prefix, sandbox, tmp_path)
    yield rig
    rig.close()


def test_sigterm_to_tini_drains_the_worker_and_exits_0(rig: WorkerRig, tmp_path: Path) -> None:
    # Given tini where the image has it, and the worker started with the image's command line
    if not Path(IMAGE_TINI).exists():
        pytest.skip(f"{IMAGE_TINI} is missing: apt-get install tini (as .ci/run does)")
    argv = image_argv()
    assert argv[0] == IMAGE_TINI
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    log_path = tmp_path / "entrypoint.log"
    with log_path.open("wb") as log:
        init = subprocess.Popen(argv, env=pod_like_env(rig, secret_dir), stdout=log, stderr=log)
    try:
        wait_until(lambda: rig.consumers() > 0 or init.poll() is not None, 30, "worker consuming")
        assert init.poll() is None, log_path.read_text(errors="replace")
        # And one slow command in flight
        rig.sandbox.control_post("/_sandbox/faults", {"latency_ms": SLOW_API_LATENCY_MS})
        rig.publish(customer_command(USERNAME, key=KEY))
        # (the API call has arrived: the command is in flight, not only out of the queues)
        wait_until(lambda: rig.sandbox.calls.get("add", 0) >= 1, 10, "command taken")
        # When the container runtime's SIGTERM hits PID 1 (tini)
        init.send_signal(signal.SIGTERM)
        code = init.wait(timeout=EXIT_WAIT_S)
    finally:
        if init.poll() is None:
            init.kill()
            init.wait()
    # Then Python handled it (an unhandled SIGTERM would exit 143): drained and exited 0
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text
    assert "draining" in log_text
    # And the in-flight command finished with its event rather than being cut off
    events = wait_until(lambda: rig.events_for(KEY), 10, "the drained command's event")
    assert [e["type"] for e in events] == ["CustomerCreated"]
    assert rig.consumers() == 0
