"""The payload store drops what belongs to closed sessions: a real worker sweeps its folder, a
destroyed session's large results go, a live session's stay (its history may replay them)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo

from client import Sandbox
from runtime.payload_store import (
    OWNER_FILE,
    RETENTION_ENV,
    SWEEP_ENV,
    UNKNOWN_GRACE,
    UNOWNED,
    FilesystemStorageDriver,
    sweep,
)
from runtime.plugin import SessionsPlugin
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess

THRESHOLD = 4096
BIG = "head -c 20000 /dev/zero | tr '\\0' x"


def _folders(store: Path) -> dict[str, Path]:
    """Workflow id -> its payload folder."""
    found = {}
    for folder in store.iterdir():
        owner = folder / OWNER_FILE
        if owner.exists():
            found[json.loads(owner.read_text())["workflow_id"]] = folder
    return found


def _payloads(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != OWNER_FILE] if folder.exists() else []


async def test_a_closed_sessions_payloads_are_dropped_and_a_live_ones_kept(
    address: str, tmp_path: Path
) -> None:
    store = tmp_path / "payloads"
    queue = f"store-{uuid.uuid4().hex[:8]}"
    worker = await WorkerProcess.start(
        address,
        env={
            "SESSIONS_PAYLOAD_STORE": str(store),
            "SESSIONS_PAYLOAD_THRESHOLD": str(THRESHOLD),
            RETENTION_ENV: "0",  # drop at the first sweep after the close
            SWEEP_ENV: "0.3",
        },
        args=["--task-queue", queue, "--backends", "bash"],
    )
    try:
        client = await Client.connect(
            address, plugins=[SessionsPlugin(payload_store=str(store), payload_threshold=THRESHOLD)]
        )
        live, closing = (
            Sandbox(new_sandbox_id("store"), client=client, task_queue=queue) for _ in range(2)
        )
        for sandbox in (live, closing):
            await sandbox.create_session("bash", {"max_output_bytes": 65536})
            big = await sandbox.execute("bash:run", {"command": BIG})
            assert big["code"] == 0 and len(big["data"]["stdout"]) == 20000, big["message"]
        folders = _folders(store)
        live_folder = folders[f"{live.sandbox_id}:bash"]
        closing_folder = folders[f"{closing.sandbox_id}:bash"]
        assert _payloads(live_folder) and _payloads(closing_folder)

        await closing.destroy_session("bash")
        for _ in range(100):  # the worker sweeps every 0.3 s
            if not closing_folder.exists():
                break
            await asyncio.sleep(0.2)
        assert not closing_folder.exists(), _payloads(closing_folder)

        await asyncio.sleep(1)  # a few more sweeps: the live session's payloads stay
        assert _payloads(live_folder)
        again = await live.execute("bash:run", {"command": BIG})
        assert again["code"] == 0 and len(again["data"]["stdout"]) == 20000
        await live.shutdown_server()
    finally:
        await worker.stop()


async def test_sweep_judges_only_its_own_servers_folders_and_ages_out_the_rest(
    client: Client, tmp_path: Path
) -> None:
    server = client.service_client.config.target_host
    ours, other, none = (
        FilesystemStorageDriver(tmp_path, server=s) for s in (server, "elsewhere:7233", None)
    )
    ns = client.namespace
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=b"z" * 100)
    never_started = f"never-{uuid.uuid4().hex[:8]}"
    target = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace=ns, id=never_started)
    )
    folders = {
        name: tmp_path / (await driver.store(target, [payload]))[0].claim_data["dir"]
        for name, driver in (("ours", ours), ("other", other), ("none", none))
    }
    assert len(set(folders.values())) == 3  # one folder per server
    unowned = await ours.store(StorageDriverStoreContext(), [payload])
    assert unowned[0].claim_data["dir"] == UNOWNED

    # Fresh: an unknown workflow's payloads wait out the grace, the others the retention.
    assert await sweep(client, ours, retention=3600) == 0
    old = time.time() - UNKNOWN_GRACE - 10
    for path in [
        *_payloads(tmp_path / UNOWNED),
        *(p for f in folders.values() for p in _payloads(f)),
    ]:
        os.utime(path, (old, old))
    # Past the grace: the workflow this server does not know; another server's stays.
    assert await sweep(client, ours, retention=UNKNOWN_GRACE * 2) == 1
    assert not folders["ours"].exists() and _payloads(folders["other"])
    # Past the retention: unowned ones and those of a client without the plugin (no server).
    assert await sweep(client, ours, retention=60) == 2
    assert not folders["none"].exists() and _payloads(tmp_path / UNOWNED) == []
    assert _payloads(folders["other"])  # left to its own server's workers
