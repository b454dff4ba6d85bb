"""Shared fixtures live in tests/fixtures/, one file per real service."""

import importlib.util

import pytest

pytest_plugins = [
    name
    for name in (
        "tests.fixtures.broker",
        "tests.fixtures.sandbox",
        "tests.fixtures.postgres",
        "tests.fixtures.private_postgres",
        "tests.fixtures.private_rabbitmq",
        "tests.fixtures.stores",
        "tests.fixtures.tracing",
    )
    if importlib.util.find_spec(name) is not None
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs PostgreSQL needs a running service too: ``-m "not integration"``
    must run on a machine without any (the ``postgres`` mark may sit on one parameter)."""
    for item in items:
        if item.get_closest_marker("postgres") is not None:
            item.add_marker(pytest.mark.integration)
