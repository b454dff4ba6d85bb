"""The reseller API client (`ResellerClient`) and its response classification."""

from worker.api.classify import Result, classify_exception, classify_response, parse_retry_after
from worker.api.client import ResellerClient

__all__ = [
    "ResellerClient",
    "Result",
    "classify_exception",
    "classify_response",
    "parse_retry_after",
]
