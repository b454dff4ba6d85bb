"""Executing one command, on a pool thread: claim the key, call the API, decide the outcome.

``Executor.process`` never touches the broker (pika is not thread-safe): it returns a
``Decision`` that the consumer carries out on the connection's thread — publish the event,
schedule a delayed retry or dead-letter, then ack.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import Any

from contracts import Command, command_customer, fingerprint_material
from worker import terminal
from worker.calling import CommandCall
from worker.decision import Decision, Envelope, ExecutorConfig
from worker.errors import ProvisioningError, TransientError
from worker.leases import HeldLeases
from worker.left_behind import LeftBehind, Unrecorded
from worker.outcomes import Disposition, Verdict, of_claim, of_error, when_retries_run_out
from worker.recorded import recorded_by_another, recorded_failure, recorded_outcome, replay_success
from worker.rejection import reject_conflict, reject_invalid
from worker.retry import next_delay_s
from worker.store import Claim, ClaimStatus, IdempotencyStore, StoreError

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.1  # how often a redelivered command asks again for a key still leased
BUSY_WAIT_MARGIN_S = 1.0  # beyond dead_after_s: the dead holder's last heartbeat, rounding


class Executor:
    def __init__(
        self,
        client: Any,
        store: IdempotencyStore,
        config: ExecutorConfig,
        metrics: Any = None,
        leases: HeldLeases | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._config = config
        self._metrics = metrics
        # What the calls in flight hold, renewed by the liveness thread (worker.leases).
        self.leases = leases if leases is not None else HeldLeases()
        # What a store outage left leased or unrecorded here.
        self._left_behind = LeftBehind(store, config.owner)
        # The customer whose lease this pool thread's last completion let go with the
        # result (one write instead of two): the command's own unlock is then done.
        self._unlocked = threading.local()

    def process(self, envelope: Envelope) -> Decision:
        if envelope.command is None:
            return reject_invalid(self._store, self._config, envelope, self._count)
        if self._at_delivery_limit(envelope):
            command = envelope.command
            decided = recorded_outcome(self._store, command, self._fingerprints, self._count)
            return decided or terminal.poisoned(envelope, command)
        return self._process_command(envelope, envelope.command)

    def _at_delivery_limit(self, envelope: Envelope) -> bool:
        # The broker would dead-letter the next redelivery silently; park it ourselves
        # while we still can publish the event every command is owed.
        limit = self._config.delivery_limit
        return limit > 0 and envelope.delivery_count >= limit - 1

    def fingerprint(self, command: Command) -> str:
        # Keyed: the material holds passwords, and a bare hash of them would be guessable.
        return _hmac(self._config.fingerprint_key, command)

    def legacy_fingerprint(self, command: Command) -> str | None:
        """The fingerprint records made before the store had its own key carry."""
        legacy_key = self._config.legacy_fingerprint_key
        return None if legacy_key is None else _hmac(legacy_key, command)

    def _fingerprints(self, command: Command) -> set[str | None]:
        return {self.fingerprint(command), self.legacy_fingerprint(command)} - {None}

    def _process_command(self, env: Envelope, command: Command) -> Decision:
        # A copy of a message whose outcome was already decided: a redelivery, or a delay-tier
        # copy that survived a crash between scheduling it and acking the original. A fresh
        # publish or a dead-letter replay (attempts reset) of a failed key runs again.
        if env.delivery_count or env.delayed_attempts:
            decided = recorded_failure(self._store, command, self._fingerprints, self._count)
            if decided is not None:
                return decided
        # One worker process at a time per customer (this process's pool already orders
        # them): two of a customer's commands running at once in two processes or replicas
        # could make a read-back wrong (an AddCredential repeated after a DeleteCredential
        # that ran beside it adds the credential twice). The claim takes the customer's lease.
        customer = command_customer(command)
        self._unlocked.customer = None
        try:
            return self._run_claimed(env, command, customer)
        finally:
            if customer is not None and self._unlocked.customer != customer:
                self._unlock_customer(customer)

    def _run_claimed(self, env: Envelope, command: Command, customer: str | None) -> Decision:
        claim = self._claim(env, command, customer)
        if claim.status is ClaimStatus.BUSY:
            unrecorded = self._left_behind.outcome(command.idempotency_key)
            if unrecorded is not None:  # the API answered before the store failed
                decision = self._record(command, unrecorded)
                self._left_behind.discard(command.idempotency_key)
                return decision
            if self._left_behind.release(command.idempotency_key):
                claim = self._claim(env, command, customer)
        verdict = of_claim(claim.status)
        if verdict is None:
            with self.leases.holding(command.idempotency_key, customer):
                try:
                    return self._run(env, command, claim)
                except StoreError:
                    # The store failed mid-outage: our lease on the key outlives this call.
                    self._left_behind.add(command.idempotency_key)
                    raise
        if verdict.outcome is Disposition.SUCCEEDED:
            assert claim.event is not None
            return replay_success(command, claim.event, self._count)
        if verdict.outcome is Disposition.REJECTED:
            fingerprint, store, config = self.fingerprint(command), self._store, self._config
            return reject_conflict(store, config, env, command, verdict, fingerprint, self._count)
        if claim.status is ClaimStatus.CUSTOMER_BUSY:
            return self._busy(command, "a command of this customer runs in another worker")
        # Another live worker holds the key: come back later rather than run it twice.
        return self._busy(command, "key is being executed by another worker")

    def _run(self, env: Envelope, command: Command, claim: Claim) -> Decision:
        call = CommandCall(
            self._client,
            command,
            uncertain=claim.uncertain,
            retries=self._config.immediate_retries,
            retry_budget_s=self._config.immediate_retry_budget_s,
            resolve_budget_s=self._config.resolve_budget_s,
            on_retry=lambda _state: self._count("immediate_retry", type(command).__name__),
        )
        try:
            result = call.run()
        except ProvisioningError as exc:
            verdict = of_error(exc, command)
            if verdict.outcome is Disposition.FAILED:
                return self._failed(env, command, exc, verdict, call.uncertain)
            return self._retry_or_give_up(env, command, exc, uncertain=call.uncertain)
        except Exception:
            # A bug or the store: the broker redelivers (the outcome policy's "retry later").
            self._store.release(command.idempotency_key, self._config.owner, call.uncertain)
            raise
        body = terminal.success_event(env, command, result)
        decision = terminal.succeeded(command, body)
        return self._record(command, Unrecorded(True, body, call.uncertain, decision))

    def let_go(self, command: Command) -> None:
        """After a store outage gave ``command`` back to the broker (``LeftBehind.let_go``)."""
        self._left_behind.let_go(command.idempotency_key, command_customer(command))

    def _busy(self, command: Command, why: str) -> Decision:
        # Not counted as an attempt: the holder's lease or death bounds how long this lasts.
        self._count("delayed_retry", type(command).__name__)
        return Decision(
            type(command).__name__,
            "retry",
            retry_in_s=self._config.retry_delays_s[0],
            last_error=why,
            count_attempt=False,
        )

    def _unlock_customer(self, customer: str) -> None:
        try:
            self._store.unlock_customer(customer, self._config.owner)
        except StoreError:  # the lease expires, and this owner may take it again meanwhile
            log.warning("could not release a customer lease", exc_info=True)

    def _lease_lost(self, command: Command) -> Decision:
        """``complete`` found another worker holding the key: this execution publishes no
        event of its own. The one recorded by whoever completed goes out again; when nobody
        has yet, the message comes back later and finds it."""
        log.warning(
            "lease lost before the outcome was stored; publishing the recorded one",
            extra={"fields": {"command_type": type(command).__name__}},
        )
        recorded = recorded_by_another(self._store, command, self._count)
        if recorded is not None:
            return recorded
        return self._busy(command, "another worker took the key over while this one ran")

    def _claim(self, env: Envelope, command: Command, customer: str | None) -> Claim:
        """Claim the customer and the key, waiting here while another live worker holds
        the customer, and, for a redelivered command, while the key stays leased.

        A redelivery usually means the worker that held the key died: its lease looks busy
        until its heartbeat is ``dead_after_s`` old. Sending the command to a delay tier
        instead would let the customer's later commands overtake it (a DeleteCredential
        running before the AddCredential it follows, which then adds it again); waiting on
        this pool thread keeps the customer's order, bounded by the dead-holder detection.
        Both waits end after ``dead_after_s`` (and a margin); then the caller comes back later.
        """
        config = self._config
        deadline = time.monotonic() + config.dead_after_s + BUSY_WAIT_MARGIN_S
        waits = {ClaimStatus.CUSTOMER_BUSY} | ({ClaimStatus.BUSY} if env.delivery_count else set())
        fingerprint, legacy = self.fingerprint(command), self.legacy_fingerprint(command)
        while True:
            claim = self._store.claim(
                command.idempotency_key,
                fingerprint,
                config.owner,
                config.lease_ttl_s,
                config.dead_after_s,
                customer=customer,
                legacy_fingerprint=legacy,
            )
            if claim.status not in waits or time.monotonic() >= deadline:
                return claim
            time.sleep(BUSY_POLL_S)

    # -- outcomes ---------------------------------------------------------------------

    def _record(self, command: Command, outcome: Unrecorded) -> Decision:
        """Store the outcome (``complete``, which lets the customer's lease go in the same
        write); kept in ``_left_behind`` if the store fails."""
        key, owner, customer = (
            command.idempotency_key,
            self._config.owner,
            command_customer(command),
        )
        try:
            stored = self._store.complete(
                key, owner, outcome.succeeded, outcome.event, outcome.uncertain, customer
            )
        except StoreError:
            self._left_behind.keep_outcome(key, outcome)
            raise
        self._unlocked.customer = customer
        return outcome.decision if stored else self._lease_lost(command)

    def _failed(
        self,
        env: Envelope,
        command: Command,
        exc: ProvisioningError,
        verdict: Verdict,
        uncertain: bool,
    ) -> Decision:
        body = terminal.failure_event(env, command, exc, verdict)
        decision = terminal.failed(command, body, verdict, str(exc))
        return self._record(command, Unrecorded(False, body, uncertain, decision))

    def _retry_or_give_up(
        self, env: Envelope, command: Command, exc: ProvisioningError, *, uncertain: bool
    ) -> Decision:
        retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
        delay = next_delay_s(env.delayed_attempts, self._config.retry_delays_s, retry_after)
        verdict = when_retries_run_out(delay_left=delay is not None)
        if delay is None:
            return self._failed(env, command, exc, verdict, uncertain)
        self._store.release(command.idempotency_key, self._config.owner, uncertain)
        self._count("delayed_retry", type(command).__name__)
        return Decision(type(command).__name__, "retry", retry_in_s=delay, last_error=str(exc))

    def _count(self, what: str, command_type: str) -> None:
        if self._metrics is not None:
            getattr(self._metrics, what)(command_type)


def _hmac(key: bytes, command: Command) -> str:
    return hmac.new(key, fingerprint_material(command), hashlib.sha256).hexdigest()
