"""No request's parameters or config in a worker's log lines: a secret planted in the config of a
failing initialize and in the parameters of a failing tool is nowhere in the worker process's
stdout and stderr, at DEBUG level and without encryption (the SDK's DEBUG lines print payloads)."""

from __future__ import annotations

import logging
import re
import uuid

from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from client import Sandbox
from contract import ErrorCode
from runtime import log_redaction
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess


def _secret(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


async def test_worker_logs_hold_no_config_or_params_of_failed_calls(
    client: Client, address: str
) -> None:
    in_cwd, in_env, in_config, in_param = (_secret(n) for n in ("CWD", "ENV", "CFG", "PARAM"))
    queue = f"logs-{uuid.uuid4().hex[:8]}"
    worker = await WorkerProcess.start(
        address,
        env={"LOG_LEVEL": "DEBUG"},
        args=["--task-queue", queue, "--backends", "bash", "testkit"],
        capture=True,
    )
    try:
        sandbox = Sandbox(new_sandbox_id("logs"), client=client, task_queue=queue)
        # initialize fails on the config, and its message (for the caller) names the value.
        created = await sandbox.create_session(
            "bash", {"cwd": f"relative/{in_cwd}", "env": {"API_TOKEN": in_env}}
        )
        assert created["code"] == ErrorCode.INITIALIZE_FAILED, created
        assert in_cwd in created["message"], created
        # A tool that raises with its parameter in the message, in a session with a secret config.
        await sandbox.create_session("testkit", {"token": in_config, "note": in_config})
        failed = await sandbox.execute("testkit:boom", {"message": in_param})
        assert failed["code"] == ErrorCode.TOOL_ERROR and in_param in failed["message"], failed
        await sandbox.shutdown_server()
    finally:
        await worker.stop()

    output = "".join(worker.output)
    # The failures were logged, with their stack and types, and no message.
    assert "Completing activity as failed" in output, output[-4000:]
    assert "tool testkit:boom raised" in output, output[-4000:]
    for secret in (in_cwd, in_env, in_config, in_param):
        lines = [line for line in output.splitlines() if secret in line]
        assert not lines, f"{secret} in the worker's log: {lines[:5]}"
    # The activity failure keeps its result code, not its message.
    assert re.search(r"ApplicationError \(type \d+\): \[message withheld\]", output), output


def test_a_scrubbed_record_keeps_the_stack_and_types_and_withholds_messages() -> None:
    secret = "SECRET-1"  # a variable: the traceback shows source lines
    try:
        try:
            raise ValueError(f"cwd 'relative/{secret}' must be an absolute path")
        except ValueError as exc:
            raise ApplicationError(f"bash initialize failed: {secret}", type="4007") from exc
    except ApplicationError as exc:
        error = exc
    record = logging.LogRecord(
        "temporalio.activity", logging.WARNING, __file__, 1, "failed", None, None
    )
    record.exc_info = (type(error), error, error.__traceback__)
    text = logging.Formatter().format(log_redaction.scrub(record))
    assert "SECRET-1" not in text
    assert "ValueError: [message withheld]" in text
    assert f"ApplicationError (type 4007): {log_redaction.WITHHELD}" in text
    assert "direct cause" in text and __file__ in text

    sdk = logging.LogRecord(
        "temporalio.activity",
        logging.ERROR,
        __file__,
        1,
        "Exception handling failed, original error: SECRET-2 ({'activity_id': '1'})",
        None,
        None,
    )
    assert "SECRET-2" not in log_redaction.scrub(sdk).getMessage()
