"""JSON Schema of every command and event, generated from the Structs themselves.

The committed files in ``contracts/schema/`` are what publishers and consumers outside
Python read; ``stale_schema_files`` tells whether they still match the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import msgspec

from contracts.commands import Command
from contracts.events import Event
from contracts.rules import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from contracts.secret import Secret

SCHEMA_DIR: Final = Path(__file__).parent / "schema"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
REF_TEMPLATE: Final = "#/$defs/{name}"


def _schema_hook(cls: type) -> dict[str, Any]:
    if cls is Secret:
        return {
            "type": "string",
            "minLength": PASSWORD_MIN_LENGTH,
            "maxLength": PASSWORD_MAX_LENGTH,
            "writeOnly": True,
        }
    raise NotImplementedError(f"no JSON Schema for {cls.__name__}")


def _document(union: Any, title: str, description: str) -> dict[str, Any]:
    (root,), components = msgspec.json.schema_components(
        (union,), schema_hook=_schema_hook, ref_template=REF_TEMPLATE
    )
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": title,
        "description": description,
        **root,
        "$defs": components,
    }


def build_schemas() -> dict[str, str]:
    """File name -> its exact text (sorted keys, two-space indent, trailing newline)."""
    documents = {
        "commands.schema.json": _document(
            Command,
            "Provisioning command",
            "A command body on the provisioning.commands exchange; `type` selects the shape.",
        ),
        "events.schema.json": _document(
            Event,
            "Provisioning event",
            "A result event on the provisioning.events exchange; `type` selects the shape.",
        ),
    }
    return {
        name: json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, doc in documents.items()
    }


def write_schemas(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in build_schemas().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_schema_files(out_dir: Path = SCHEMA_DIR) -> list[str]:
    """Names of the schema files that are missing or differ from the code."""
    stale = []
    for name, text in build_schemas().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
