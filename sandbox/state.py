"""The sandbox's model: customers with their profile, flags, credentials and apps.

Passwords are kept only as SHA-256 digests (the real API cannot return them either), so no
dump, log or state file ever holds one. Every mutation goes through ``commit`` (persist,
then append to the ordered log of applied mutations the soak test audits).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox.persist import StateFile

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "phone",
    "website",
    "company",
)
ACCOUNT_FIELDS = ("package", "whitelabel")
MASK = "***"

# The fixed app catalogue every customer gets: name -> (title, description).
APP_CATALOGUE: dict[str, tuple[str, str]] = {
    "gravatar": ("Gravatar", "Appends your gravatar to each HTML email."),
    "clicktrack": ("Click Tracking", "Overwrites every link to track every click in emails."),
    "opentrack": ("Open Tracking", "Appends an invisible image to HTML emails to track opens."),
    "subscriptiontrack": (
        "Subscription Tracking",
        "Adds unsubscribe links to the bottom of the text and HTML emails.",
    ),
    "footer": ("Footer", "Appends a custom footer to every email."),
    "spamcheck": ("Spam Checker", "Checks outbound messages for spam content."),
    "bcc": ("BCC", "Automatically BCC an address for every email sent."),
    "newrelic": ("New Relic", "Sends email statistics to New Relic."),
    "twitter": ("Twitter", "Posts email statistics to a Twitter account."),
    "ganalytics": ("Google Analytics", "Adds Google Analytics tracking to links."),
    "domainkeys": ("DomainKeys", "Signs outbound email with DomainKeys."),
    "dkim": ("DKIM", "Signs outbound email with DKIM."),
    "eventnotify": ("Event Notification", "Posts email events to a URL."),
    "template": ("Email Templates", "Wraps every HTML email in a template."),
}


def password_digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


@dataclass
class AppState:
    activated: bool = False
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class Customer:
    id: int
    username: str
    email: str
    password_sha256: str
    profile: dict[str, str] = field(default_factory=dict)
    ip_groups: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    free_user: bool | None = None
    billing_date: str | None = None
    active: bool = True
    website_access: bool = True
    credentials: dict[str, str] = field(default_factory=dict)  # name -> password digest
    apps: dict[str, AppState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in APP_CATALOGUE:
            self.apps.setdefault(name, AppState())

    def listing_row(self) -> dict[str, str]:
        """The documented profile/get row: every value a string, ``active`` "true"/"false"."""
        row = {"id": str(self.id), "username": self.username, "email": self.email}
        row["active"] = "true" if self.active else "false"
        row.update({name: self.profile.get(name, "") for name in PROFILE_FIELDS})
        return row

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Customer:
        apps = {name: AppState(**app) for name, app in record.pop("apps", {}).items()}
        return cls(**record, apps=apps)

    def masked(self) -> dict[str, Any]:
        """The record for ``/_sandbox/state``: every password replaced by ``***``."""
        record = self.record()
        record["password"] = MASK
        del record["password_sha256"]
        record["credentials"] = {name: {"password": MASK} for name in self.credentials}
        return record


class SandboxState:
    """All customers plus the call counters and the mutation log; guarded by ``lock``."""

    def __init__(self, state_file: str | Path | None = None) -> None:
        self.lock = threading.RLock()
        self.customers: dict[str, Customer] = {}
        self.tombstones: set[str] = set()
        self.log: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.next_id = 1
        self._file = StateFile(state_file) if state_file else None
        if self._file is not None:
            records, tombstones, self.log, self.next_id = self._file.load()
            self.customers = {r["username"]: Customer.from_record(r) for r in records}
            self.tombstones = set(tombstones)

    def find(self, username: str) -> Customer | None:
        return self.customers.get(username)

    def username_taken(self, username: str) -> bool:
        # The documents: a deleted customer's username cannot be registered again.
        return username in self.customers or username in self.tombstones

    def new_customer(self, username: str, email: str, password: str) -> Customer:
        customer = Customer(self.next_id, username, email, password_digest(password))
        self.next_id += 1
        return customer

    def commit(
        self,
        customer: Customer,
        entry: dict[str, Any],
        *,
        previous_username: str | None = None,
        deleted: bool = False,
    ) -> None:
        """Store the changed customer, persist it and log the applied mutation."""
        if previous_username is not None:
            self.customers.pop(previous_username, None)
        if deleted:
            self.customers.pop(customer.username, None)
            self.tombstones.add(customer.username)
        else:
            self.customers[customer.username] = customer
        logged = {"seq": len(self.log) + 1, **entry, "timestamp": time.time()}
        self.log.append(logged)
        if self._file is not None:
            self._file.save(
                record=None if deleted else customer.record(),
                username=customer.username,
                previous_username=previous_username,
                tombstone=deleted,
                entry=logged,
                next_id=self.next_id,
            )

    def count_call(self, key: str) -> None:
        self.calls[key] += 1

    def count_applied(self, key: str) -> None:
        self.applied[key] += 1

    def check_password(self, username: str, password: str) -> bool:
        customer = self.customers.get(username)
        return customer is not None and customer.password_sha256 == password_digest(password)

    def dump(self) -> dict[str, Any]:
        return {
            "customers": [c.masked() for c in sorted(self.customers.values(), key=lambda c: c.id)],
            "deleted_usernames": sorted(self.tombstones),
        }

    def reset(self) -> None:
        self.customers.clear()
        self.tombstones.clear()
        self.log.clear()
        self.calls.clear()
        self.applied.clear()
        self.next_id = 1
        if self._file is not None:
            self._file.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
