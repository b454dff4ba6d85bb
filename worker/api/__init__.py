"""The reseller API client (`ResellerClient`): its call table, transport and classification."""

from worker.api.client import ResellerClient

__all__ = ["ResellerClient"]
