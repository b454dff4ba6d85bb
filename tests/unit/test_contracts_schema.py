"""JSON Schema files, the schema CLIs, and importing contracts with only msgspec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.schema import SCHEMA_DIR, build_schemas, stale_schema_files, write_schemas
from worker.cli import main as provisioner_main

REPO = Path(__file__).resolve().parents[2]


def test_committed_schema_files_are_up_to_date() -> None:
    # Given the schemas regenerated in memory from the code
    # Then the committed files are identical (run `provisioner schema` after a change)
    assert stale_schema_files(SCHEMA_DIR) == []
    for name, text in build_schemas().items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == text


def test_schemas_describe_every_command_and_event_deterministically() -> None:
    # Given two generations
    first, second = build_schemas(), build_schemas()
    # Then they are byte-identical, end with a newline, and cover every message type
    assert first == second
    commands = json.loads(first["commands.schema.json"])
    events = json.loads(first["events.schema.json"])
    assert all(text.endswith("}\n") for text in first.values())
    assert len(commands["anyOf"]) == 19
    assert len(events["anyOf"]) == 21
    assert commands["discriminator"]["propertyName"] == "type"


def test_password_fields_are_write_only_strings_of_at_least_six() -> None:
    defs = json.loads(build_schemas()["commands.schema.json"])["$defs"]
    for struct, field in [
        ("CreateCustomer", "password"),
        ("ResetPassword", "new_password"),
        ("AddCredential", "credential_password"),
        ("ChangeCredentialPassword", "new_credential_password"),
    ]:
        schema = defs[struct]["properties"][field]
        assert schema["type"] == "string" and schema["writeOnly"] is True
        assert schema["minLength"] == 6


def test_documented_lengths_are_in_the_schema() -> None:
    props = json.loads(build_schemas()["commands.schema.json"])["$defs"]["CreateCustomer"][
        "properties"
    ]
    assert props["username"]["maxLength"] == 64
    assert props["first_name"]["maxLength"] == 50
    assert props["billing_date"]["anyOf"][0]["format"] == "date"


def test_check_reports_a_stale_directory_and_write_fixes_it(tmp_path: Path) -> None:
    # Given a directory with one outdated and one missing schema file
    (tmp_path / "commands.schema.json").write_text("{}\n", encoding="utf-8")
    assert stale_schema_files(tmp_path) == ["commands.schema.json", "events.schema.json"]
    # When the CLI checks it, Then it exits 1
    assert provisioner_main(["schema", "--check", "--out", str(tmp_path)]) == 1
    # When the CLI writes it, Then the check passes
    assert provisioner_main(["schema", "--out", str(tmp_path)]) == 0
    assert provisioner_main(["schema", "--check", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(build_schemas())


def test_print_writes_the_schemas_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert provisioner_main(["schema", "--print", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "".join(build_schemas().values())
    assert list(tmp_path.iterdir()) == []


def test_python_m_contracts_schema_check(tmp_path: Path) -> None:
    # Given freshly written schemas
    write_schemas(tmp_path)
    # When `python -m contracts schema --check` runs, Then it succeeds
    ok = subprocess.run(
        [sys.executable, "-m", "contracts", "schema", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    # And after one file changes, it fails naming the file
    (tmp_path / "events.schema.json").write_text("{}\n", encoding="utf-8")
    stale = subprocess.run(
        [sys.executable, "-m", "contracts", "schema", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert stale.returncode == 1
    assert "events.schema.json" in stale.stderr


BLOCKED = ("pika", "requests", "worker", "tenacity", "sentry_sdk", "psycopg", "prometheus_client")
IMPORT_WITH_ONLY_MSGSPEC = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # any import of these now raises ImportError
import contracts, contracts.schema, contracts.examples, contracts.__main__
from contracts import decode_command, encode_command
examples = contracts.examples.example_commands()
assert all(decode_command(encode_command(c)) == c for c in examples.values())
assert not [m for m in sys.modules if m.split(".")[0] in {BLOCKED!r} and sys.modules[m]]
print("ok")
"""


def test_contracts_import_with_only_msgspec() -> None:
    # Given a Python where the worker's runtime dependencies cannot be imported
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_ONLY_MSGSPEC],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    # Then contracts imports and works
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
