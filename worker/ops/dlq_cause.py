"""What a dead letter's failure *is*, without what it happened *to*: the group of a dead letter.

Two dead letters share a group when their command type, dead-letter reason, error code and
error message agree once the message's identifiers and numbers are masked
(``customer 'acme-7' not found (HTTP 404)`` -> ``customer '<id>' not found (HTTP <n>)``).
The group id is a hash of those four fields, so it is the same in every call, on every
machine, for as long as one such message stays in the queue: an operator can list it, then
replay or purge it, by id.
"""

from __future__ import annotations

import hashlib
import json
import re

GROUP_ID_CHARS = 12  # hex digits of a SHA-256: collisions need ~16 million groups
MASKED_ERROR_MAX_CHARS = 200  # a cause is a sentence, not a stack trace

_QUOTED = re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}\b")
# A token mixing letters and digits (``acme-7``, ``k-42``, ``v2``) names one thing.
_MIXED = re.compile(r"\b(?=[\w.-]*[A-Za-z])(?=[\w.-]*\d)\w(?:[\w.-]*\w)?")
# A quantity with its unit (``3.5s``, ``512KB``) is a number, not a name.
_QUANTITY = re.compile(r"\b\d+(?:[.,]\d+)*(?=(?:ms|s|m|h|d|b|kb|mb|gb)\b)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACE = re.compile(r"\s+")


def mask_error(text: str) -> str:
    """The message with identifiers (quoted values, UUIDs, emails, hex ids, names with digits)
    and numbers replaced by placeholders; whitespace collapsed; at most a sentence long."""
    masked = _QUOTED.sub(lambda m: m.group(0)[0] + "<id>" + m.group(0)[0], text)
    masked = _UUID.sub("<id>", masked)
    masked = _EMAIL.sub("<email>", masked)
    masked = _HEX.sub("<id>", masked)
    masked = _QUANTITY.sub("<n>", masked)
    masked = _MIXED.sub("<id>", masked)
    masked = _NUMBER.sub("<n>", masked)
    masked = _SPACE.sub(" ", masked).strip()
    return masked[:MASKED_ERROR_MAX_CHARS]


def group_id(command_type: str, reason: str, error_code: str, masked_error: str) -> str:
    """A stable id for the group: a hash of its fields (no salt, no order, no clock)."""
    canonical = json.dumps([command_type, reason, error_code, masked_error])
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:GROUP_ID_CHARS]
