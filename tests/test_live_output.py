"""Live output: a running call's output reaches the caller's iterator and any watcher from an
offset within the stated delay; the stream stays bounded and crosses continue-as-new.

Real server, real workers (the last tests drive the batching alone, with a stand-in stream).
Run with ``-s`` to see the measured delays.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from activities import live_output
from activities.live_output import LiveOutput
from client import Sandbox
from client.streams import watch_output
from contract import ErrorCode, OutputChunk
from contract.output import MAX_BATCHES_PER_CALL, RETAINED_BYTES, batch_spacing
from tests.conftest import new_sandbox_id
from tests.devserver import DevServer
from tests.processes import WorkerProcess
from tests.replaying import replay_workflow

#: The stated delay, from a line printed in the sandbox to the line seen by a reader: the median
#: of every line seen live, and the most any one line may take (generous: a loaded 2-core box).
P50_BOUND = 0.3
EACH_BOUND = 1.5
#: Five lines one second apart, each with the time it was printed.
FIVE_LINES = 'for i in 1 2 3 4 5; do echo "line$i $(date +%s.%N)"; sleep 1; done'
_LINE = re.compile(r"^line(\d) (\d+\.\d+)$")
PUBLISH = "__temporal_workflow_stream_publish"
POLL = "__temporal_workflow_stream_poll"


class Lines:
    """The timed lines a reader saw: (line number, seconds from printed to seen)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self._partial = ""

    def add(self, chunk: OutputChunk) -> list[int]:
        """Record the complete lines of a chunk (seen now); answers their numbers."""
        now = time.time()
        text, self._partial = (self._partial + chunk.text).rpartition("\n")[::2]
        found = []
        for line in text.splitlines():
            match = _LINE.match(line)
            assert match, line
            number = int(match.group(1))
            self.seen.append((number, now - float(match.group(2))))
            found.append(number)
        return found

    @property
    def numbers(self) -> list[int]:
        return [n for n, _ in self.seen]

    def delays(self, numbers: set[int]) -> list[float]:
        return [d for n, d in self.seen if n in numbers]


async def _watch_call(
    client: Client, session_id: str, from_offset: int, request_id: str
) -> tuple[Lines, list[OutputChunk]]:
    """A second reader: every chunk of the session from ``from_offset`` until the call's end."""
    lines, chunks = Lines(), []
    async for chunk in watch_output(client, session_id, from_offset):
        chunks.append(chunk)
        if chunk.request_id != request_id:
            continue
        if chunk.kind == "end":
            break
        lines.add(chunk)
    return lines, chunks


def _stated(name: str, delays: list[float]) -> str:
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name}: {len(delays)} lines, p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )


async def test_each_line_reaches_the_caller_and_watchers_from_an_offset_within_the_delay(
    sandbox: Sandbox, client: Client
) -> None:
    await sandbox.create_session("bash")
    session_id = f"{sandbox.sandbox_id}:bash"
    request_id = f"five-{uuid.uuid4().hex[:8]}"
    caller = Lines()
    chunks: list[OutputChunk] = []
    watchers: list[asyncio.Task[tuple[Lines, list[OutputChunk]]]] = []
    resume_from = -1
    answers: list[dict[str, Any]] = []
    async for item in sandbox.execute_stream(
        "bash:run", {"command": FIVE_LINES, "timeout": 30}, request_id=request_id
    ):
        if isinstance(item, dict):
            answers.append(item)
            continue
        assert not answers, "the answer comes last"
        chunks.append(item)
        if 2 in caller.add(item):  # mid-way: one watcher from the first chunk, one resuming
            resume_from = item.offset + 1
            watchers.append(
                asyncio.create_task(_watch_call(client, session_id, chunks[0].offset, request_id))
            )
            watchers.append(
                asyncio.create_task(_watch_call(client, session_id, resume_from, request_id))
            )

    assert len(answers) == 1
    answer = answers[0]
    assert answer["code"] == 0, answer
    printed = answer["data"]["stdout"].splitlines()
    assert [line.split()[0] for line in printed] == [f"line{i}" for i in range(1, 6)]
    assert "".join(c.text for c in chunks) == answer["data"]["stdout"]
    assert {c.stream for c in chunks} == {"stdout"}
    assert [c.offset for c in chunks] == sorted({c.offset for c in chunks})
    assert caller.numbers == [1, 2, 3, 4, 5]

    (from_first, first_chunks), (resumed, resumed_chunks) = await asyncio.wait_for(
        asyncio.gather(*watchers), 30
    )
    assert from_first.numbers == [1, 2, 3, 4, 5]  # the kept lines at once, then the live ones
    assert resumed.numbers == [3, 4, 5]  # from where it left off: none again, none missed
    assert [c.offset for c in first_chunks] == sorted({c.offset for c in first_chunks})
    assert resumed_chunks[0].offset == resume_from
    assert first_chunks[-1].kind == resumed_chunks[-1].kind == "end"
    assert first_chunks[-1].code == 0

    live = caller.delays({1, 2, 3, 4, 5}) + from_first.delays({3, 4, 5}) + resumed.delays({3, 4, 5})
    print()
    print(_stated("caller's iterator", caller.delays({1, 2, 3, 4, 5})))
    print(
        _stated(
            "watchers started mid-way", from_first.delays({3, 4, 5}) + resumed.delays({3, 4, 5})
        )
    )
    print(_stated("all", live))
    assert max(live) <= EACH_BOUND, live
    assert statistics.median(live) <= P50_BOUND, live


async def test_a_later_watcher_gets_what_was_kept_and_the_session_goes_on(
    sandbox: Sandbox, client: Client
) -> None:
    await sandbox.create_session("bash")
    session_id = f"{sandbox.sandbox_id}:bash"
    request_id = f"kept-{uuid.uuid4().hex[:8]}"
    items = [
        item
        async for item in sandbox.execute_stream(
            "bash:run", {"command": "echo out; echo err >&2; echo more"}, request_id=request_id
        )
    ]
    answer = items[-1]
    assert isinstance(answer, dict) and answer["code"] == 0, answer
    chunks = [c for c in items[:-1] if isinstance(c, OutputChunk)]
    by_stream = {s: "".join(c.text for c in chunks if c.stream == s) for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": "out\nmore\n", "stderr": "err\n"}

    # After the call ended: from offset 0, and from a given offset, one call or the whole session.
    async def read(from_offset: int, request: str | None) -> list[OutputChunk]:
        got = []
        async for chunk in watch_output(client, session_id, from_offset, request_id=request):
            got.append(chunk)
            if chunk.kind == "end" and chunk.request_id == request_id:
                return got
        raise AssertionError("the session closed first")

    again = await asyncio.wait_for(read(0, request_id), 15)
    assert [(c.stream, c.text) for c in again[:-1]] == [(c.stream, c.text) for c in chunks]
    assert again[-1].kind == "end" and again[-1].code == 0
    later = await asyncio.wait_for(read(chunks[-1].offset, None), 15)
    assert [c.text for c in later[:-1]] == [chunks[-1].text]
    through_sandbox = await asyncio.wait_for(
        _first(sandbox.watch("bash", request_id=request_id)), 15
    )
    assert through_sandbox.offset == chunks[0].offset

    # A refused streaming call answers at once, with no output; the session goes on as before.
    started = time.monotonic()
    refused = [i async for i in sandbox.execute_stream("bash:run", {})]
    assert len(refused) == 1 and isinstance(refused[0], dict)
    assert refused[0]["code"] == ErrorCode.MISSING_FIELD, refused
    assert time.monotonic() - started < 5
    after = await sandbox.execute("bash:run", {"command": "echo after"})
    assert after["code"] == 0 and after["data"]["stdout"] == "after\n", after
    failing = [i async for i in sandbox.execute_stream("bash:run", {"command": "echo x; exit 3"})]
    assert isinstance(failing[-1], dict) and failing[-1]["data"]["return_code"] == 3

    # With no session, the call runs in a temporary one: its answer alone comes, at once.
    elsewhere = Sandbox(new_sandbox_id(), client=client)
    started = time.monotonic()
    alone = [i async for i in elsewhere.execute_stream("bash:run", {"command": "echo t"})]
    assert len(alone) == 1 and isinstance(alone[0], dict), alone
    assert alone[0]["meta"]["temporary_session"] and alone[0]["data"]["stdout"] == "t\n"
    assert time.monotonic() - started < 10


async def _first(chunks: AsyncIterator[OutputChunk]) -> OutputChunk:
    async for chunk in chunks:
        return chunk
    raise AssertionError("no chunk")


async def test_a_chatty_call_adds_a_bounded_number_of_events_and_the_stream_keeps_its_newest(
    sandbox: Sandbox, client: Client
) -> None:
    await sandbox.create_session("bash")
    handle = client.get_workflow_handle(f"{sandbox.sandbox_id}:bash")
    before = len((await handle.fetch_history()).events)
    lines = 2000
    command = f'for i in $(seq 1 {lines}); do echo "line $i"; sleep 0.001; done'
    started = time.monotonic()
    items = [
        i async for i in sandbox.execute_stream("bash:run", {"command": command, "timeout": 60})
    ]
    took = time.monotonic() - started
    answer = items[-1]
    assert isinstance(answer, dict) and answer["code"] == 0, answer
    chunks = [c for c in items[:-1] if isinstance(c, OutputChunk)]
    assert "".join(c.text for c in chunks) == answer["data"]["stdout"]
    assert answer["data"]["stdout"].count("\n") == lines

    events = (await handle.fetch_history()).events[before:]
    signals = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == PUBLISH
    ]
    polls = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == POLL
    ]
    print(
        f"\n{lines} lines in {took:.1f} s: {len(chunks)} chunks, {len(signals)} publish signals, "
        f"{len(polls)} polls, {len(events)} history events for the call"
    )
    # One batch per 0.1 s at most (batch_spacing), however many lines: events follow time.
    assert len(signals) <= took / 0.1 + 3
    assert len(polls) <= len(signals) + 3
    assert len(events) < lines / 3

    # Calls printing more than the stream keeps: a watcher from 0 starts at the oldest kept.
    big = "head -c 200000 /dev/zero | tr '\\0' a"
    for _ in range(3):
        streamed = [i async for i in sandbox.execute_stream("bash:run", {"command": big})]
        assert isinstance(streamed[-1], dict) and streamed[-1]["code"] == 0
    newest = await handle.query("__temporal_workflow_stream_offset", result_type=int)
    kept: list[OutputChunk] = []
    async for chunk in watch_output(client, handle.id, 0):
        kept.append(chunk)
        if chunk.offset == newest - 1:
            break
    assert kept[0].offset > 0
    assert sum(len(c.text) for c in kept) <= RETAINED_BYTES


# --- across continue-as-new ------------------------------------------------------------------


@pytest.fixture
async def early_continue(tmp_path) -> AsyncIterator[DevServer]:
    """A server of the test's own that suggests continue-as-new after a few dozen events."""
    server = DevServer(
        tmp_path / "temporal.db", dynamic_config={"limit.historyCount.suggestContinueAsNew": 60}
    )
    await server.start()
    yield server
    await server.stop()


async def test_the_stream_and_its_watchers_cross_continue_as_new(early_continue: DevServer) -> None:
    worker = await WorkerProcess.start(early_continue.address)
    try:
        sandbox = Sandbox(new_sandbox_id(), early_continue.address)
        await sandbox.start()
        await sandbox.create_session("bash")
        client = sandbox.client
        session_id = f"{sandbox.sandbox_id}:bash"
        first_run = (await client.get_workflow_handle(session_id).describe()).run_id
        watched: list[OutputChunk] = []

        async def watch() -> None:  # from the start, across runs, up to the last call's line
            async for chunk in watch_output(client, session_id, 0):
                watched.append(chunk)
                if chunk.text == "last\n":
                    return

        watcher = asyncio.create_task(watch())
        texts = []
        for n in range(20):  # until the session has continued as new, then one more call
            items = [
                i
                async for i in sandbox.execute_stream(
                    "bash:run", {"command": f"echo call{n}; sleep 0.2; echo done{n}"}
                )
            ]
            assert isinstance(items[-1], dict) and items[-1]["code"] == 0, items[-1]
            texts.append("".join(c.text for c in items[:-1] if isinstance(c, OutputChunk)))
            assert texts[-1] == f"call{n}\ndone{n}\n"
            if (await client.get_workflow_handle(session_id).describe()).run_id != first_run:
                break
        else:
            raise AssertionError("the session never continued as new")
        final = [i async for i in sandbox.execute_stream("bash:run", {"command": "echo last"})]
        assert isinstance(final[-1], dict) and final[-1]["code"] == 0

        await asyncio.wait_for(watcher, 20)
        offsets = [c.offset for c in watched]
        assert offsets == sorted(set(offsets)), "each chunk once, in order, across runs"
        output = "".join(c.text for c in watched if c.kind == "output")
        assert output == "".join(texts) + "last\n"

        # A watcher started on the new run reads the items carried from the old one.
        carried = await asyncio.wait_for(_first(watch_output(client, session_id, 0)), 15)
        assert carried.offset == 0 and carried.text == "call0\n"
        # Streaming calls, watchers let go and the carried stream replay deterministically.
        await replay_workflow(client, session_id, "live_output_continued", run_id=first_run)
    finally:
        await worker.stop()


# --- the batching, alone ----------------------------------------------------------------------


class _StandIn:
    """What LiveOutput uses of a WorkflowStreamClient: a topic to publish to, and flush."""

    def __init__(self) -> None:
        self.buffer: list[OutputChunk] = []
        self.batches: list[list[OutputChunk]] = []

    def topic(self, name: str, *, type: type[OutputChunk]) -> _StandIn:
        return self

    def publish(self, chunk: OutputChunk) -> None:
        self.buffer.append(chunk)

    async def flush(self) -> None:
        if self.buffer:
            self.batches.append(self.buffer)
            self.buffer = []


async def test_output_is_batched_and_a_call_publishes_at_most_its_bound(monkeypatch) -> None:
    assert batch_spacing(0) == 0.1 and batch_spacing(MAX_BATCHES_PER_CALL) is None
    stand_in = _StandIn()
    live = LiveOutput(cast(WorkflowStreamClient, stand_in), "r1")
    started = time.monotonic()
    while time.monotonic() - started < 0.55:  # a line every 5 ms
        live.write("stdout", b"x\n")
        await asyncio.sleep(0.005)
    live.write("stderr", "caf\u00e9".encode()[:-1])  # a character cut between two batches
    await asyncio.sleep(0.15)
    live.write("stderr", "caf\u00e9".encode()[-1:])
    await live.close()
    text = "".join(c.text for b in stand_in.batches for c in b if c.stream == "stdout")
    assert text.count("x\n") > 50
    assert len(stand_in.batches) <= 8  # ~0.55 s at one batch per 0.1 s, not one per line
    assert (
        "".join(c.text for b in stand_in.batches for c in b if c.stream == "stderr") == "caf\u00e9"
    )

    # Past the bound a call publishes no more output: a note says so, the answer has the rest.
    monkeypatch.setattr(live_output, "batch_spacing", lambda n: 0.001 if n < 3 else None)
    stand_in = _StandIn()
    live = LiveOutput(cast(WorkflowStreamClient, stand_in), "r2")
    for _ in range(20):
        live.write("stdout", b"y\n")
        await asyncio.sleep(0.01)
    await live.close()
    kinds = [[c.kind for c in b] for b in stand_in.batches]
    assert kinds[:3] == [["output"]] * 3 and kinds[3:] == [["note"]], kinds
