"""Shared fixtures live in tests/fixtures/, one file per real service."""

import importlib.util

pytest_plugins = [
    name
    for name in (
        "tests.fixtures.broker",
        "tests.fixtures.sandbox",
        "tests.fixtures.postgres",
        "tests.fixtures.private_postgres",
        "tests.fixtures.private_rabbitmq",
    )
    if importlib.util.find_spec(name) is not None
]
