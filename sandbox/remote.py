"""Talking to a sandbox's control endpoint over real HTTP (tests, demo, benchmarks)."""

from __future__ import annotations

from typing import Any

import requests

CONTROL_TIMEOUT_S = 10.0


class ControlClient:
    """Mixin: ``control_get("faults")``, ``control_post("faults", {...})`` on ``control_url``."""

    control_url: str
    control_timeout_s: float = CONTROL_TIMEOUT_S

    def control(self, method: str, path: str, json: Any = None) -> Any:
        relative = path.removeprefix("/").removeprefix("_sandbox/")
        response = requests.request(
            method, self.control_url + relative, json=json, timeout=self.control_timeout_s
        )
        response.raise_for_status()
        return response.json()

    def control_get(self, path: str) -> Any:
        return self.control("GET", path)

    def control_post(self, path: str, json: Any = None) -> Any:
        return self.control("POST", path, json if json is not None else {})
