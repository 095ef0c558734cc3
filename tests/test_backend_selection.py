"""Which backends a worker offers: `./run.sh` (the `serve` command) only the built-in ones unless
told otherwise, so the test suite's plugin backends never show up in the main job, even in a venv
where the tests installed them; `worker.py` everything registered, or the backends it is given."""

from __future__ import annotations

import re
import tomllib

import pytest

from backends import BUILTIN_BACKENDS, load_backends, registered_backends
from tests.devserver import free_port
from tests.processes import ROOT, serve_once

TEST_BACKENDS = {"testkit", "tally"}


async def _serve(tmp_path, *args: str) -> tuple[int, str]:
    """Run `python -m cli serve` without its demo until its worker is up; (exit code, output)."""
    return await serve_once(tmp_path, "--no-demo", *args, http_port=free_port())


def _offered(output: str) -> set[str]:
    found = re.search(r"^READY \S+ backends=(\S*)$", output, re.MULTILINE)
    assert found, output
    return set(found.group(1).split(","))


def test_builtin_backends_are_the_projects_own_entry_points() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = project["entry-points"]["durable_sessions.backends"]
    assert set(BUILTIN_BACKENDS) == set(own)
    assert all(target.startswith("backends.") for target in own.values())


async def test_serve_worker_offers_only_builtin_backends(tmp_path) -> None:
    # ./test.sh installed the plugin package: its backends are registered in this venv...
    assert registered_backends() >= TEST_BACKENDS
    code, output = await _serve(tmp_path)
    assert code == 0, output
    # ...and still the main job's worker does not offer them.
    assert _offered(output) == set(BUILTIN_BACKENDS)


async def test_serve_offers_the_backends_a_user_names(tmp_path) -> None:
    code, output = await _serve(tmp_path, "--backends", "bash", "tally")
    assert code == 0, output
    assert _offered(output) == {"bash", "tally"}


async def test_serve_refuses_an_unknown_backend_before_starting_anything(tmp_path) -> None:
    code, output = await _serve(tmp_path, "--backends", "bash", "no-such-backend")
    assert code == 2, output
    assert "no backend registered as no-such-backend" in output
    assert not (tmp_path / "temporal.db").exists()


def test_worker_loads_every_registered_backend_by_default() -> None:
    assert {b.name for b in load_backends()} == registered_backends()
    assert [b.name for b in load_backends(["tally"])] == ["tally"]
    with pytest.raises(LookupError, match="no backend registered as nope"):
        load_backends(["bash", "nope"])
