"""PostgreSQL's own forms of the hot writes: one statement where SQLite runs two or three.

Each statement a command sends costs a round trip, the worker's driver time and the
server's parse-plan-execute on the same few cores, so the writes of one command are folded
into single statements with data-modifying CTEs (``WITH ... AS (INSERT ... RETURNING)``):

- ``CLAIM_CUSTOMER``: the customer's lease, the key's claim when the lease was granted,
  and the record as it stood, for the refusal (``schema.refused``). The CTEs run on one
  snapshot: the read shows the record before the claim, and may predate a commit the claim
  waited for, so a ``BUSY`` read is read again afresh (``READ_CLAIM``) before it is
  believed. ``CLAIM_KEY`` is the same without a customer.
- ``COMPLETE_UNLOCK``: the result stored and the customer's lease let go, in one write.

The writes a batch carries (``BATCHED``) are also prepared on every pooled connection when
it opens (``Batched``): a batch is then one text of ``EXECUTE`` statements
(``worker.store.pg_batch``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker.store import schema


@dataclass(frozen=True)
class Batched:
    """A hot write: ``text`` (pyformat) as psycopg runs it alone, and ``name``, the statement
    each pooled connection prepares from it, which a batch runs as ``EXECUTE name(...)``
    with the values quoted by the driver (``execute_text``)."""

    name: str
    text: str
    params: tuple[str, ...] = field(init=False)  # the placeholders in order: $1, $2, ...
    prepare_text: str = field(init=False)
    execute_text: str = field(init=False)

    def __post_init__(self) -> None:
        params = tuple(dict.fromkeys(re.findall(r"%\((\w+)\)s", self.text)))
        position = {name: i for i, name in enumerate(params, 1)}
        body = re.sub(r"%\((\w+)\)s", lambda m: f"${position[m.group(1)]}", self.text)
        arguments = ", ".join(f"%({name})s" for name in params)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "prepare_text", f"PREPARE {self.name} AS {body}")
        object.__setattr__(self, "execute_text", f"EXECUTE {self.name}({arguments})")


_RECORD_COLUMNS = """(key, fingerprint, state, lease_owner, lease_expires_at, attempts,
                       after_crash, uncertain, event, created_at, updated_at)"""
_VALUES = (
    "VALUES (:key, :fingerprint, 'running', :owner, :lease_expires_at, 1, 0, 0, NULL, :now, :now)"
)
_IF_LOCKED = """SELECT :key, :fingerprint, 'running', :owner, :lease_expires_at, 1, 0, 0,
       NULL::bytea, :now, :now
WHERE EXISTS (SELECT 1 FROM lock)"""

# The record's columns that ``schema.refused`` reads, then whether the lease was granted
# and the claim's (attempts, after_crash, uncertain), NULL when nothing was claimed.
_DECIDE = """
SELECT r.fingerprint, r.state, r.lease_owner, r.lease_expires_at, r.attempts,
       CASE WHEN c.attempts IS NULL THEN r.event END, w.last_seen_at,
       {locked}, c.attempts, c.after_crash, c.uncertain
FROM (SELECT 1) AS one
LEFT JOIN claim c ON true
LEFT JOIN idempotency_records r ON r.key = :key
LEFT JOIN idempotency_workers w ON w.owner = r.lease_owner"""


def _claim_cte(source: str) -> str:
    claim = schema.CLAIM.strip()
    head, tail = claim.split(_VALUES)
    assert head.startswith("INSERT INTO idempotency_records"), "schema.CLAIM changed shape"
    return head + source + tail


# Composed from the constant statements above and in ``schema`` only (no input reaches the
# text: every value is a parameter), hence the S608 exemption.
_CLAIM_KEY_SQL = schema.to_pyformat(
    f"WITH claim AS ({_claim_cte(_VALUES)})" + _DECIDE.format(locked="true")
)
_CLAIM_CUSTOMER_SQL = schema.to_pyformat(
    f"WITH lock AS ({schema.LOCK_CUSTOMER.strip()}),\nclaim AS ({_claim_cte(_IF_LOCKED)})"  # noqa: S608
    + _DECIDE.format(locked="EXISTS (SELECT 1 FROM lock)")
)
_COMPLETE_UNLOCK_SQL = schema.to_pyformat(
    f"WITH done AS ({schema.COMPLETE.strip()} RETURNING 1),\n"
    f"unlocked AS ({schema.UNLOCK_CUSTOMER})\nSELECT count(*) FROM done"
)


def _batched(name: str, text: str) -> Batched:
    return Batched(f"provisioner_{name}", text)


CLAIM_KEY = _batched("claim_key", _CLAIM_KEY_SQL)
CLAIM_CUSTOMER = _batched("claim_customer", _CLAIM_CUSTOMER_SQL)
COMPLETE = _batched("complete", schema.to_pyformat(schema.COMPLETE))
COMPLETE_UNLOCK = _batched("complete_unlock", _COMPLETE_UNLOCK_SQL)
RELEASE = _batched("release", schema.to_pyformat(schema.RELEASE))
UNLOCK_CUSTOMER = _batched("unlock_customer", schema.to_pyformat(schema.UNLOCK_CUSTOMER))
HEARTBEAT = _batched("heartbeat", schema.to_pyformat(schema.HEARTBEAT))
BATCHED = (
    CLAIM_KEY,
    CLAIM_CUSTOMER,
    COMPLETE,
    COMPLETE_UNLOCK,
    RELEASE,
    UNLOCK_CUSTOMER,
    HEARTBEAT,
)
