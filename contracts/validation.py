"""Field-by-field validation that reports every problem of a command at once.

msgspec stops at the first error, so the generic JSON object is checked here first, against
the Structs' own type information (``msgspec.inspect``): the annotated types of
``contracts.rules`` are the rule table. Messages describe the rule, never the value, so
they are safe to log even for password fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from contracts.commands import COMMAND_TYPES, PROFILE_FIELDS, CommandBase, UpdateCustomerProfile
from contracts.rules import CHECKS, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from contracts.secret import Secret

TAG_FIELD: Final = "type"
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a command: a JSON path (``$.email``) and the rule it breaks."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def child_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


@cache
def struct_fields(cls: type[CommandBase]) -> dict[str, mi.Field]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return {f.encode_name: f for f in info.fields}


def validate_fields(cls: type[CommandBase], obj: Mapping[str, Any], today: date) -> list[Problem]:
    """Every problem of ``obj`` (a decoded JSON object) as a ``cls`` command."""
    fields = struct_fields(cls)
    problems: list[Problem] = []
    for key in obj:
        if key != TAG_FIELD and key not in fields:
            problems.append(Problem(child_path("$", key), "unknown field"))
    for name, field in fields.items():
        path = child_path("$", name)
        if name not in obj:
            if field.required:
                problems.append(Problem(path, "required field is missing"))
            continue
        problems.extend(validate_value(obj[name], field.type, path, today))
    problems.extend(_command_rules(cls, obj))
    return sorted(problems, key=lambda p: p.path)


def _command_rules(cls: type[CommandBase], obj: Mapping[str, Any]) -> list[Problem]:
    # An update that names no field would be an API call that changes nothing.
    if cls is UpdateCustomerProfile and all(obj.get(f) is None for f in PROFILE_FIELDS):
        return [
            Problem("$", "at least one profile field is required: " + ", ".join(PROFILE_FIELDS))
        ]
    return []


def validate_value(value: Any, t: mi.Type, path: str, today: date) -> list[Problem]:
    if isinstance(t, mi.Metadata):
        return _validate_metadata(value, t, path, today)
    if isinstance(t, mi.UnionType):
        if value is None and any(isinstance(m, mi.NoneType) for m in t.types):
            return []
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if len(members) != 1:
            raise TypeError("commands use only `X | None` unions")
        member_problems = validate_value(value, members[0], path, today)
        if value is None and member_problems:
            return [Problem(path, member_problems[0].message + " or null")]
        return member_problems
    validator = _VALIDATORS.get(type(t))
    if validator is None:
        raise TypeError(f"no validator for {t!r}")
    problems: list[Problem] = validator(value, t, path, today)
    return problems


def _validate_metadata(value: Any, t: mi.Metadata, path: str, today: date) -> list[Problem]:
    extra = t.extra or {}
    if isinstance(t.type, mi.StrType):
        problems = _validate_str(value, t.type, path, today, extra.get("rule"))
    else:
        problems = validate_value(value, t.type, path, today)
    if problems:
        return problems
    typed = date.fromisoformat(value) if isinstance(t.type, mi.DateType) else value
    for check in extra.get("checks", ()):
        message = CHECKS[check](typed, today)
        if message:
            problems.append(Problem(path, message))
    return problems


def _length_problem(n: int, lo: int | None, hi: int | None, unit: str) -> str | None:
    if lo is not None and n < lo:
        return "must not be empty" if lo == 1 else f"must have at least {lo} {unit}"
    if hi is not None and n > hi:
        return f"must have at most {hi} {unit}"
    return None


def _validate_str(
    value: Any, t: mi.StrType, path: str, today: date, rule: str | None = None
) -> list[Problem]:
    if not isinstance(value, str):
        return [Problem(path, "must be a string")]
    message = _length_problem(len(value), t.min_length, t.max_length, "characters")
    if message:
        return [Problem(path, message)]
    if t.pattern and not re.search(t.pattern, value):
        return [Problem(path, rule or f"must match the pattern {t.pattern}")]
    return []


def _validate_int(value: Any, t: mi.IntType, path: str, today: date) -> list[Problem]:
    if type(value) is not int:
        return [Problem(path, "must be an integer")]
    if t.ge is not None and value < t.ge:
        return [Problem(path, f"must be at least {t.ge}")]
    if t.le is not None and value > t.le:
        return [Problem(path, f"must be at most {t.le}")]
    return []


def _validate_bool(value: Any, t: mi.BoolType, path: str, today: date) -> list[Problem]:
    return [] if isinstance(value, bool) else [Problem(path, "must be true or false")]


def _validate_date(value: Any, t: mi.DateType, path: str, today: date) -> list[Problem]:
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return []
    return [Problem(path, "must be a real date in YYYY-mm-dd format")]


def _validate_list(value: Any, t: mi.ListType, path: str, today: date) -> list[Problem]:
    if not isinstance(value, list):
        return [Problem(path, "must be an array")]
    message = _length_problem(len(value), t.min_length, t.max_length, "items")
    problems = [Problem(path, message)] if message else []
    for i, item in enumerate(value):
        problems.extend(validate_value(item, t.item_type, f"{path}[{i}]", today))
    return problems


def _validate_dict(value: Any, t: mi.DictType, path: str, today: date) -> list[Problem]:
    if not isinstance(value, dict):
        return [Problem(path, "must be an object")]
    message = _length_problem(len(value), t.min_length, t.max_length, "entries")
    problems = [Problem(path, message)] if message else []
    for key, item in value.items():
        item_path = child_path(path, key)
        problems.extend(validate_value(key, t.key_type, item_path, today))
        problems.extend(validate_value(item, t.value_type, item_path, today))
    return problems


def _validate_custom(value: Any, t: mi.CustomType, path: str, today: date) -> list[Problem]:
    if t.cls is not Secret:
        raise TypeError(f"no validator for {t.cls!r}")
    if not isinstance(value, str):
        return [Problem(path, "must be a string")]
    if len(value) < PASSWORD_MIN_LENGTH:
        return [Problem(path, f"must have at least {PASSWORD_MIN_LENGTH} characters")]
    if len(value) > PASSWORD_MAX_LENGTH:
        return [Problem(path, f"must have at most {PASSWORD_MAX_LENGTH} characters")]
    return []


_VALIDATORS: Final[dict[type[mi.Type], Any]] = {
    mi.StrType: _validate_str,
    mi.IntType: _validate_int,
    mi.BoolType: _validate_bool,
    mi.DateType: _validate_date,
    mi.ListType: _validate_list,
    mi.DictType: _validate_dict,
    mi.CustomType: _validate_custom,
}


def known_command_type(obj: Mapping[str, Any]) -> type[CommandBase] | None:
    tag = obj.get(TAG_FIELD)
    return COMMAND_TYPES.get(tag) if isinstance(tag, str) else None
