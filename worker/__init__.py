"""The provisioning worker: RabbitMQ commands -> SendGrid reseller API -> result events."""

__version__ = "0.1.0"
