"""Property tests: strategies are built from the same rules the validator reads."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import (
    COMMAND_TYPES,
    CommandBase,
    InvalidCommand,
    Problem,
    decode_command,
    encode_command,
)
from contracts.commands import UpdateCustomerProfile
from contracts.rules import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    RESERVED_SETTING_NAMES,
    latest_billing_date,
)
from contracts.secret import Secret

TODAY = date(2026, 1, 31)
_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_EMAIL = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    st.from_regex(r"[A-Za-z0-9._+-]{1,16}", fullmatch=True),
    st.lists(_LABEL, min_size=1, max_size=2),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)


def _text(t: mi.StrType, *, no_control: bool = False) -> st.SearchStrategy[str]:
    # Unicode category Cc is exactly the C0 controls, DEL and the C1 controls.
    alphabet = st.characters(exclude_categories=("Cc", "Cs") if no_control else ("Cs",))
    strategy = st.text(alphabet=alphabet, min_size=t.min_length or 0, max_size=t.max_length or 40)
    if t.pattern:
        pattern = re.compile(t.pattern)
        strategy = strategy.filter(lambda s: pattern.search(s) is not None)
    return strategy


def _checked(t: mi.Metadata) -> st.SearchStrategy[Any]:
    checks = set((t.extra or {}).get("checks", ()))
    inner = t.type
    if "email" in checks:
        assert isinstance(inner, mi.StrType)
        emails = _EMAIL.filter(lambda e: len(e) <= (inner.max_length or 64))
        return emails.filter(lambda e: "sendgrid.com" not in e.lower())
    if "ip" in checks:
        return st.ip_addresses().map(str)
    if "billing_window" in checks:
        return st.dates(TODAY, latest_billing_date(TODAY))
    if "setting_name" in checks:
        assert isinstance(inner, mi.StrType)
        return _text(inner).filter(lambda s: s not in RESERVED_SETTING_NAMES)
    if "no_control" in checks:
        assert isinstance(inner, mi.StrType)
        return _text(inner, no_control=True)
    return value_strategy(inner)


def value_strategy(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy of valid Python values for one field type (as the Struct holds them)."""
    if isinstance(t, mi.Metadata):
        return _checked(t)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(value_strategy(m) for m in t.types))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.StrType):
        return _text(t)
    if isinstance(t, mi.IntType):
        return st.integers(min_value=t.ge, max_value=t.le)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.ListType):
        return st.lists(value_strategy(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        keys, values = value_strategy(t.key_type), value_strategy(t.value_type)
        return st.dictionaries(keys, values, min_size=t.min_length or 0, max_size=3)
    if isinstance(t, mi.CustomType) and t.cls is Secret:
        text = st.text(min_size=PASSWORD_MIN_LENGTH, max_size=PASSWORD_MAX_LENGTH)
        return text.map(Secret)
    raise AssertionError(f"no strategy for {t!r}")


def command_strategy(cls: type[CommandBase]) -> st.SearchStrategy[CommandBase]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: value_strategy(f.type) for f in info.fields}
    strategy = st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))
    if cls is UpdateCustomerProfile:
        return strategy.filter(
            lambda c: any(
                v is not None
                for k, v in msgspec.structs.asdict(c).items()
                if k not in ("idempotency_key", "customer")
            )
        )
    return strategy


def problems_or_none(data: bytes) -> list[Problem] | None:
    """The problems of an invalid body, None for a valid one; any other exception escapes."""
    try:
        decode_command(data, today=TODAY)
    except InvalidCommand as exc:
        return exc.problems
    return None


ANY_COMMAND = st.sampled_from(list(COMMAND_TYPES.values())).flatmap(command_strategy)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(ANY_COMMAND)
def test_any_valid_command_round_trips(command: CommandBase) -> None:
    # Given any command generated from the rules, When encoded and decoded
    # Then the value is equal
    assert decode_command(encode_command(command), today=TODAY) == command


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_invalid_command(data: bytes) -> None:
    problems = problems_or_none(data)
    assert problems is None or len(problems) >= 1


@settings(max_examples=300)
@given(JSON_VALUES)
def test_arbitrary_json_raises_only_invalid_command(value: Any) -> None:
    problems = problems_or_none(json.dumps(value).encode())
    assert problems is None or len(problems) >= 1


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(ANY_COMMAND, st.data())
def test_any_field_replaced_by_any_json_is_valid_or_one_invalid_command(
    command: CommandBase, data: st.DataObject
) -> None:
    # Given a valid command with one field (or a new one) replaced by arbitrary JSON
    body = json.loads(encode_command(command))
    field = data.draw(st.sampled_from([*body, "extra"]))
    body[field] = data.draw(JSON_VALUES)
    # When decoded, Then it is a command or one InvalidCommand found by our own validation
    problems = problems_or_none(json.dumps(body).encode())
    # msgspec's own messages start with "Expected"; ours describe the rule, so a problem
    # found only by the typed decoder's safety net would mean the validator missed a rule.
    assert problems is None or not any(p.message.startswith("Expected") for p in problems)


@given(st.dates(date(2000, 1, 1), date(2100, 12, 31)))
def test_latest_billing_date_is_within_one_month(signup: date) -> None:
    latest = latest_billing_date(signup)
    assert signup < latest <= signup + timedelta(days=31)
    assert latest.day <= signup.day
