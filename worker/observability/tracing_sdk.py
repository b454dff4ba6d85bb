"""The OpenTelemetry SDK side of tracing, imported only when ``OTEL_*`` asks for it.

Needs the optional extra ``provisioner[otel]`` (``opentelemetry-sdk`` and the OTLP/HTTP
exporter). Everything else is read by the SDK from the standard variables:
``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``/``HEADERS``/``TIMEOUT``, ``OTEL_BSP_*`` (batching),
``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

log = logging.getLogger(__name__)


def _exporter(name: str) -> Any:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored (otlp, console)", name)
    return None


def provider_for(names: list[str], service_name: str) -> TracerProvider | None:
    """A provider exporting, in batches on one thread each, to every known exporter named."""
    exporters = [e for e in (_exporter(n) for n in names) if e is not None]
    if not exporters:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
