"""Helpers shared by subcommands: configuration flags and the one-line error."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any

from worker.config import ConfigError, Settings, env_name, flag_name, load_settings


def add_settings_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add ``--flag`` for each named setting (all of them when none is named)."""
    wanted = set(names) if names else {f.name for f in fields(Settings)}
    group = parser.add_argument_group("configuration (flags win over the environment)")
    for f in fields(Settings):
        if f.name in wanted:
            group.add_argument(
                flag_name(f.name),
                dest=f"setting_{f.name}",
                metavar="VALUE",
                help=f"env {env_name(f.name)}",
            )


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        f.name: getattr(args, f"setting_{f.name}", None) for f in fields(Settings)
    }
    return load_settings(overrides=overrides)


def fail_config(exc: ConfigError) -> int:
    print(f"provisioner: configuration error: {exc}", file=sys.stderr)
    return 2
