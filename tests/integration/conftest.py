from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import WorkerRig


@pytest.fixture
def rig(amqp_url: str, prefix: str, sandbox: Any, tmp_path: Path) -> Iterator[WorkerRig]:
    rig = WorkerRig(amqp_url, prefix, sandbox, tmp_path)
    yield rig
    rig.close()
