"""The store's own HMAC key for the commands' fingerprints: created once with the schema (in
the same transaction), never replaced, read when a store opens; and whether records made
before it existed (fingerprinted with the API key) remain."""

from __future__ import annotations

import secrets
from typing import Any

from worker.store.records import FingerprintKeys

# Bytes of the random HMAC key created once in a new store for the commands' fingerprints.
FINGERPRINT_KEY_BYTES = 32

FINGERPRINT_KEY = "fingerprint_key"
# Set when the fingerprint key was created in a store that already held records: those were
# fingerprinted with the API key (before the key lived in the store) and still verify with it.
LEGACY_FINGERPRINTS = "legacy_fingerprints"

# Run after the DDL, in the same transaction: the legacy mark first (it looks at whether the
# key exists yet), then the key itself, created once and never replaced.
MARK_LEGACY_FINGERPRINTS = """
INSERT INTO store_meta (name, value)
SELECT 'legacy_fingerprints', :flag
WHERE EXISTS (SELECT 1 FROM idempotency_records)
  AND NOT EXISTS (SELECT 1 FROM store_meta WHERE name = 'fingerprint_key')
ON CONFLICT (name) DO NOTHING"""

ADD_FINGERPRINT_KEY = """
INSERT INTO store_meta (name, value) VALUES ('fingerprint_key', :key)
ON CONFLICT (name) DO NOTHING"""

READ_META = "SELECT name, value FROM store_meta"


def fingerprint_keys(rows: list[tuple[Any, Any]]) -> FingerprintKeys:
    """The store's fingerprint keys, from READ_META's rows."""
    meta = {str(name): bytes(value) for name, value in rows}
    return FingerprintKeys(meta[FINGERPRINT_KEY], legacy=LEGACY_FINGERPRINTS in meta)


def fingerprint_key_params() -> dict[str, Any]:
    """Parameters of MARK_LEGACY_FINGERPRINTS and ADD_FINGERPRINT_KEY (a fresh random key,
    kept only by the first process to create it)."""
    return {"flag": b"1", "key": secrets.token_bytes(FINGERPRINT_KEY_BYTES)}
