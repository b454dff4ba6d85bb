"""Requests in, replies out: the parameter bag, the reply and the documented error bodies.

The error bodies are exactly the vocabulary table of ``docs/architecture.md``; the client
classifies by them, so nothing else in the sandbox builds an error body by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

AUTH_FAILED = "Bad username / password"
USER_NOT_FOUND = "User not found"
USERNAME_EXISTS = "Username already exists"
CREDENTIAL_EXISTS = "Credential already exists"
CREDENTIAL_NOT_FOUND = "Credential not found"
APP_NOT_FOUND = "App not found"
TOO_MANY_REQUESTS = "Too many requests"
INTERNAL_ERROR = "internal error"
# What an applied_garbled fault answers with status 200: a success cut short, not JSON.
GARBLED_BODY = b'{"message": "succ\x00\xff'


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def success(**extra: Any) -> Reply:
    return Reply(200, {"message": "success", **extra})


def error_reply(status: int, *errors: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"message": "error", "errors": list(errors)}, headers or {})


class ApiError(Exception):
    """A documented refusal; the server turns it into its reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body)
        self.reply = reply

    @classmethod
    def rejected(cls, *errors: str) -> ApiError:
        return cls(error_reply(400, *errors))

    @classmethod
    def user_not_found(cls) -> ApiError:
        return cls(Reply(400, {"message": USER_NOT_FOUND}))


class Params:
    """Form / query parameters; ``ip[]`` style lists read with ``getlist``."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    def get(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None

    def getlist(self, name: str) -> list[str]:
        return [*self.values.get(f"{name}[]", []), *self.values.get(name, [])]

    def names(self) -> list[str]:
        return list(self.values)

    def operation(self) -> str | None:
        """What a fault rule's ``task`` matches: the ``task`` parameter, else ``method``."""
        return self.get("task") or self.get("method")


def encode_reply(reply: Reply, close: bool) -> bytes:
    raw = isinstance(reply.body, bytes)  # sent as is (an injected garbled answer)
    body = reply.body if raw else json.dumps(reply.body).encode("utf-8")
    phrase = (
        HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else ""
    )
    lines = [f"HTTP/1.1 {reply.status} {phrase}", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in reply.headers.items())]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_params(query: str, body: bytes) -> Params:
    values: dict[str, list[str]] = {}
    for text in (query, body.decode("utf-8", errors="replace")):
        for name, found in parse_qs(text, keep_blank_values=True).items():
            values.setdefault(name, []).extend(found)
    return Params(values)


def format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
