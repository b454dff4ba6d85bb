"""Observability: metrics, liveness/readiness probes, JSON logs, Sentry, secret scrubbing.

One concern per module (each documents its API in its docstring):

- ``metrics.Metrics``: Prometheus metrics, one method per thing that happened.
- ``health.Health``: liveness (the loop ticks) and readiness (connected and consuming).
- ``http.ObservabilityServer``: ``/metrics``, ``/healthz``, ``/readyz`` on one port.
- ``logs.configure_logging`` / ``log_command_outcome`` / ``log_fields``: JSON or text lines.
- ``sentry.init_sentry`` / ``message_scope`` / ``capture_unexpected``: unexpected errors only.
- ``tracing`` / ``traced`` / ``tracing_sdk``: OpenTelemetry spans and W3C context over AMQP
  headers; off (no cost) unless ``OTEL_*`` configures the SDK.
- ``redact.redact_text`` / ``redact_mapping`` / ``register_secret``: shared secret scrubbing.
"""
