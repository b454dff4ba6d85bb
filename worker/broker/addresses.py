"""The broker's addresses: one URL, or a comma-separated list of the nodes of one cluster.

Each process starts at a random one of them, so that replicas spread their connections over
the nodes, and a new connection after a loss or a refusal starts at the next one, so that a
node going down moves its clients to the others instead of having them knock on its door.
A quorum queue is served from every node (its leader may be elsewhere: the broker forwards),
so any node will do. Messages about the addresses never show a password.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("amqp", "amqps")
SEPARATOR = ","
REDACTED = "***"


def redact_url(url: str) -> str:
    """``amqp://guest:secret@host:5672/%2F`` -> ``amqp://guest:***@host:5672/%2F``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable broker URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def redact_urls(text: str) -> str:
    """A list of URLs with every password masked."""
    return SEPARATOR.join(redact_url(url) for url in split_urls(text))


def split_urls(text: str) -> list[str]:
    """The URLs of a comma-separated list, surrounding blanks dropped."""
    return [part.strip() for part in text.split(SEPARATOR) if part.strip()]


def check_urls(text: str) -> list[str]:
    """The list's URLs, each an ``amqp://`` or ``amqps://`` URL with a host and a valid port.

    Raises ``ValueError`` naming the URL by its position (never its text: it holds the
    password)."""
    urls = split_urls(text)
    if not urls:
        raise ValueError("no broker URL given")
    for position, url in enumerate(urls, start=1):
        where = f"URL {position} of {len(urls)}" if len(urls) > 1 else "the URL"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError(f"{where} cannot be parsed") from None
        if parts.scheme not in SCHEMES:
            raise ValueError(f"{where} must be an amqp:// or amqps:// URL")
        if not parts.hostname:
            raise ValueError(f"{where} names no host")
    return urls


def passwords(text: str) -> list[str]:
    """Every password in the list, to be kept out of logs."""
    found = []
    for url in split_urls(text):
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            found.append(password)
    return found


class BrokerAddresses:
    """The nodes to try, in the order to try them. Not thread-safe: one owner each."""

    def __init__(self, urls: Sequence[str], *, start: int | None = None) -> None:
        if not urls:
            raise ValueError("no broker URL given")
        self.urls = tuple(urls)
        self.in_use: str | None = None  # the URL of the last connection made
        self._next = random.randrange(len(self.urls)) if start is None else start % len(urls)

    @classmethod
    def parse(cls, text: str, *, start: int | None = None) -> BrokerAddresses:
        return cls(check_urls(text), start=start)

    def __len__(self) -> int:
        return len(self.urls)

    def rotation(self) -> Iterator[str]:
        """Every URL once, from the one due next."""
        for offset in range(len(self.urls)):
            yield self.urls[(self._next + offset) % len(self.urls)]

    def connected(self, url: str) -> None:
        """``url`` is now in use: a later connection (after losing this one) starts at the
        next node."""
        self.in_use = url
        self._next = (self.urls.index(url) + 1) % len(self.urls)

    def describe(self) -> str:
        """The addresses, passwords masked, for messages."""
        return redact_urls(SEPARATOR.join(self.urls))
