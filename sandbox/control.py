"""The control endpoint under ``/_sandbox/``: faults, call counts, the mutation log, state.

``GET  faults``  the live fault settings (and how many of each fault were injected)
``POST faults``  merge a JSON object into them (``next`` rules are appended)
``DELETE faults`` back to no faults
``GET  calls``   ``{"calls": {...}, "applied": {...}}`` keyed ``<call>`` and ``<call>/<task>``
``GET  log``     ``{"log": [...]}`` the applied mutations in order (never a password)
``GET  state``   every customer, passwords replaced by ``***``
``POST reset``   clear state, counts, log and faults
``GET  health``  ``{"status": "ok"}`` (for readiness waits)
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.faults import Faults, FaultSettingsError
from sandbox.protocol import ApiError, Reply, error_reply
from sandbox.state import SandboxState

CONTROL_PREFIX = "/_sandbox/"


def read_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(error_reply(400, f"body must be a JSON object: {exc}")) from None
    if not isinstance(value, dict):
        raise ApiError(error_reply(400, "body must be a JSON object"))
    return value


def handle_control(
    state: SandboxState, faults: Faults, method: str, path: str, body: bytes
) -> Reply:
    """Answer one control request (``path`` starts with ``CONTROL_PREFIX``)."""
    route = (method, path[len(CONTROL_PREFIX) :].strip("/"))
    if route == ("GET", "faults"):
        return Reply(200, faults.snapshot())
    if route == ("POST", "faults"):
        try:
            faults.merge(read_json_object(body))
        except FaultSettingsError as exc:
            raise ApiError(error_reply(400, str(exc))) from None
        return Reply(200, faults.snapshot())
    if route == ("DELETE", "faults"):
        faults.clear()
        return Reply(200, faults.snapshot())
    with state.lock:
        return read_or_reset(state, faults, route)


def read_or_reset(state: SandboxState, faults: Faults, route: tuple[str, str]) -> Reply:
    if route == ("GET", "calls"):
        return Reply(200, {"calls": dict(state.calls), "applied": dict(state.applied)})
    if route == ("GET", "log"):
        return Reply(200, {"log": list(state.log)})
    if route == ("GET", "state"):
        return Reply(200, state.dump())
    if route == ("POST", "reset"):
        state.reset()
        faults.clear()
        return Reply(200, {"message": "success"})
    if route in (("GET", "health"), ("GET", "")):
        return Reply(200, {"status": "ok"})
    raise ApiError(
        error_reply(404, f"unknown control request {route[0]} {CONTROL_PREFIX}{route[1]}")
    )
