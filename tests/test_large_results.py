"""Large results leave workflow history and come back whole to the caller."""

from __future__ import annotations

import hashlib
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from client import Sandbox
from runtime.payload_store import FilesystemStorageDriver

FIVE_MB = 5 * 1024 * 1024


async def test_a_5_mb_result_round_trips_and_history_stays_small(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash", {"max_output_bytes": FIVE_MB + 1})
    result = await sandbox.execute(
        "bash:run", {"command": f"head -c {FIVE_MB} /dev/zero | tr '\\0' x"}
    )
    assert result["code"] == 0, result["message"]
    assert result["data"]["stdout"] == "x" * FIVE_MB

    history = await sandbox.client.get_workflow_handle(f"{sandbox.sandbox_id}:bash").fetch_history()
    size = sum(HistoryEvent.ByteSize(e) for e in history.events)
    assert size < 256 * 1024, f"history holds {size} bytes"


async def test_filesystem_driver_round_trip_and_dedup(tmp_path: Path) -> None:
    driver = FilesystemStorageDriver(tmp_path)
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=b"y" * 1000)
    claims = await driver.store(StorageDriverStoreContext(), [payload, payload])
    assert claims[0] == claims[1]
    assert [p.name for p in tmp_path.iterdir()] == ["unowned"]  # stored for no workflow
    assert len(list((tmp_path / "unowned").iterdir())) == 1
    back = await driver.retrieve(StorageDriverRetrieveContext(), claims)
    assert back == [payload, payload]


async def test_filesystem_driver_rejects_a_key_that_is_not_a_hash(tmp_path: Path) -> None:
    import pytest

    driver = FilesystemStorageDriver(tmp_path)
    with pytest.raises(ValueError, match="not a payload key"):
        await driver.retrieve(
            StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data={"key": "../etc"})]
        )
    with pytest.raises(ValueError, match="not a payload folder"):
        claim = StorageDriverClaim(claim_data={"key": "a" * 64, "dir": "../../etc"})
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])


async def test_filesystem_driver_reads_claims_of_the_earlier_flat_layout(tmp_path: Path) -> None:
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=b"old" * 400)
    data = payload.SerializeToString()
    key = hashlib.sha256(data).hexdigest()
    (tmp_path / key).write_bytes(data)  # as the driver wrote it before payload folders
    driver = FilesystemStorageDriver(tmp_path)
    claim = StorageDriverClaim(claim_data={"key": key})
    assert await driver.retrieve(StorageDriverRetrieveContext(), [claim]) == [payload]
