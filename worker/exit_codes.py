"""The exit codes of every ``provisioner`` command and of the worker process.

Below the CLI so that the supervisor and the worker process, which the CLI starts, can name
them without importing the CLI back.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # unexpected: a bug, see the log and Sentry
EXIT_USAGE = 2  # bad usage or bad configuration; the message names the setting
EXIT_BROKER = 3  # broker unreachable or refused the credentials
EXIT_PARTIAL = 4  # the operation ran but some messages failed
EXIT_COMMAND_FAILED = 4  # publish --wait: the command failed, was rejected or unroutable
EXIT_TIMEOUT = 5  # publish --wait: no event in time
EXIT_INTERRUPTED = 130  # Ctrl-C
