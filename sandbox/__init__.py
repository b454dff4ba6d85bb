"""A local stand-in for the SendGrid reseller API: every documented call, with state and faults.

Used by the tests, the demo, the benchmarks and anyone without reseller credentials. It
speaks the error vocabulary of ``docs/architecture.md`` exactly, under both endpoint
namings (``/apiv2/reseller.<call>.json`` and ``/api/distributor.<call>.json``), and takes
fault-injection settings at start and at runtime through ``/_sandbox/``.
"""

from __future__ import annotations

from sandbox.faults import FaultSettings
from sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_API_USER,
    DEFAULT_HOST,
    DEFAULT_PORT,
    SandboxServer,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_USER",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FaultSettings",
    "SandboxServer",
]
