"""The rag backend through Sandbox: a BM25 index shared by the worker, no session needed."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from client import Sandbox
from contract import ErrorCode
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess


async def test_search_ranks_the_matching_document_first_without_a_session(
    sandbox: Sandbox,
) -> None:
    warm = await sandbox.warmup(["rag"])
    assert warm["status"] == "success" and warm["warmed"] == ["rag"], warm
    found = await sandbox.execute(
        "rag:search", {"query": "interrupt a runaway loop in the interpreter", "top_k": 3}
    )
    assert found["code"] == 0, found
    assert found["meta"]["shared"] is True and found["meta"]["session_id"] is None
    results = found["data"]["results"]
    assert results[0]["doc_id"].startswith("code.md#")
    assert "runaway loop" in results[0]["content"]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert 1 <= len(results) <= 3
    assert (await sandbox.list_sessions())["sessions"] == []


async def test_bad_searches_are_refused_clearly(sandbox: Sandbox) -> None:
    empty = await sandbox.execute("rag:search", {"query": ""})
    assert empty["code"] == ErrorCode.WRONG_TYPE, empty
    too_many = await sandbox.execute("rag:search", {"query": "ttl", "top_k": 500})
    assert too_many["code"] == ErrorCode.WRONG_TYPE and "top_k" in too_many["message"]
    nothing = await sandbox.execute("rag:search", {"query": "zebra xylophone"})
    assert nothing["code"] == 0 and nothing["data"]["results"] == []


async def test_the_corpus_folder_comes_from_the_worker_config(
    client: Client, address: str, tmp_path
) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "lighthouse.txt").write_text(
        "The lighthouse keeper logs every passing ship.\n\nFog horns sound at night."
    )
    (tmp_path / "kitchen.md").write_text("# Kitchen\n\nBread rises in a warm oven.")
    (tmp_path / "ignored.bin").write_bytes(b"lighthouse lighthouse lighthouse")
    queue = f"rag-{uuid.uuid4().hex[:8]}"
    worker = await WorkerProcess.start(
        address,
        env={"DURABLE_SESSIONS_RAG_CORPUS": str(tmp_path)},
        args=["--task-queue", queue, "--backends", "rag"],
    )
    try:
        sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
        found = await sandbox.execute("rag:search", {"query": "ship lighthouse", "top_k": 5})
        assert found["code"] == 0, found
        assert found["data"]["corpus_size"] == 2  # short files are one chunk each
        top = found["data"]["results"][0]
        assert top["doc_id"] == "notes/lighthouse.txt#0"
        assert top["source"] == "notes/lighthouse.txt"
        assert "keeper" in top["content"]
        # AgentFlow's batch: one context per query, in order; its stats.
        batch = await sandbox.execute(
            "rag:batch_search", {"queries": ["bread oven", "fog horns"], "top_k": 1}
        )
        assert batch["code"] == 0 and batch["data"]["count"] == 2, batch
        first, second = batch["data"]["contexts"]
        assert first.startswith("[kitchen.md]\n") and "Bread rises" in first, first
        assert second.startswith("[notes/lighthouse.txt]\n"), second
        assert batch["data"]["results"][1]["results"][0]["doc_id"] == "notes/lighthouse.txt#0"
        empty = await sandbox.execute("rag:batch_search", {"queries": []})
        assert empty["code"] == ErrorCode.WRONG_TYPE, empty
        stats = await sandbox.execute("rag:stats", {})
        assert stats["code"] == 0 and stats["data"]["initialized"] is True, stats
        assert stats["data"]["index"]["documents"] == 2 and stats["data"]["index"]["chunks"] == 2
        assert stats["data"]["backend_version"]
        await sandbox.shutdown_server()
    finally:
        await worker.stop()
