"""A worker that holds many descriptors (hundreds of live sessions) still starts jails: the
control descriptor a jail's supervisor inherits keeps the worker's number, which is then past
1024, the most ``select`` can watch (found by bench/scale.py at ~100 bash sessions)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

from backends.bash import BashBackend
from backends.host import BackendHost


@pytest.fixture
def busy_descriptors() -> Iterator[int]:
    """Hold open descriptors until the next ones the process opens are numbered past 1100."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.fail(f"this machine allows {hard} descriptors; the test needs 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        yield max(held)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_jail_starts_and_answers_when_its_descriptors_are_past_1024(
    busy_descriptors: int,
) -> None:
    assert busy_descriptors > 1024
    backend = BashBackend()
    host = BackendHost([backend])
    info = await backend.initialize("w", {})
    try:
        outcome = await host.invoke("bash:run", {"command": "echo $((6 * 7))"}, info)
        assert outcome.code == 0 and outcome.data["stdout"].strip() == "42", outcome
        # The control socket (file tools, the workspace scan) answers too.
        await host.invoke("bash:write_file", {"path": "a.txt", "content": "x"}, info)
        read = await host.invoke("bash:read_file", {"path": "a.txt"}, info)
        assert read.code == 0 and read.data["content"] == "x", read
    finally:
        await backend.cleanup("w", info)
