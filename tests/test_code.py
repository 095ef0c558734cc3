"""The code backend through Sandbox: a real, persistent Python interpreter per session."""

from __future__ import annotations

import asyncio

from client import Sandbox
from contract import ErrorCode
from tests import sandboxes
from tests.sandboxes import NS_CODE


async def _run(sandbox: Sandbox, code: str, timeout: float = 10) -> dict:
    return await sandbox.execute("code:execute", {"code": code, "timeout": timeout})


async def test_variables_imports_and_cwd_persist_between_calls(sandbox: Sandbox, tmp_path) -> None:
    created = await sandbox.create_session("code", {"language": "python"})
    assert created["status"] == "success", created
    # The sandbox has its own /tmp: the directory is made there, inside.
    made = f"import json\nimport os\nos.makedirs({str(tmp_path)!r})\nos.chdir({str(tmp_path)!r})"
    first = await _run(sandbox, made + "\nx = 41")
    assert first["code"] == 0 and first["data"]["result"] is None, first
    second = await _run(sandbox, "print('out'); import sys; print('err', file=sys.stderr)\nx + 1")
    assert second["code"] == 0, second
    assert second["data"]["stdout"] == "out\n"
    assert second["data"]["stderr"] == "err\n"
    assert second["data"]["result"] == "42"
    third = await _run(sandbox, "json.dumps({'cwd': os.getcwd()})")
    assert third["data"]["result"] == repr(f'{{"cwd": "{tmp_path}"}}')
    assert third["data"]["cwd"] == str(tmp_path)
    shell = await _run(sandbox, "os.system('echo from a child process')")
    assert shell["data"]["stdout"] == "from a child process\n"  # fd-level output is captured


async def test_an_exception_comes_back_with_type_message_and_traceback(sandbox: Sandbox) -> None:
    await sandbox.create_session("code")
    raised = await _run(sandbox, "def f():\n    raise KeyError('missing')\nf()")
    assert raised["code"] == 0, raised  # the interpreter worked; the user's code raised
    error = raised["data"]["error"]
    assert error["type"] == "KeyError" and error["message"] == "'missing'"
    assert 'File "<cell>", line 2, in f' in error["traceback"]
    assert "code_driver" not in error["traceback"]
    syntax = await _run(sandbox, "def (")
    assert syntax["data"]["error"]["type"] == "SyntaxError"
    exited = await _run(sandbox, "import sys; sys.exit(2)")
    assert exited["data"]["error"]["type"] == "SystemExit"
    assert (await _run(sandbox, "1 + 1"))["data"]["result"] == "2"


async def test_a_runaway_loop_is_stopped_at_its_timeout_and_the_session_lives_on(
    sandbox: Sandbox,
) -> None:
    await sandbox.create_session("code")
    await _run(sandbox, "kept = 'still here'")
    started = asyncio.get_running_loop().time()
    stuck = await _run(sandbox, "while True:\n    pass", timeout=1)
    assert stuck["code"] == ErrorCode.TIMEOUT, stuck
    assert asyncio.get_running_loop().time() - started < 5
    assert "variables remain" in stuck["message"]
    assert (await _run(sandbox, "kept"))["data"]["result"] == "'still here'"

    # Code that ignores the interrupt: the interpreter is replaced, and the answer says so.
    deaf = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    replaced = await _run(sandbox, deaf, timeout=1)
    assert replaced["code"] == ErrorCode.TIMEOUT and "replaced" in replaced["data"]["note"]
    assert (await _run(sandbox, "kept"))["data"]["error"]["type"] == "NameError"
    assert (await _run(sandbox, "2 * 21"))["data"]["result"] == "42"


async def test_an_interpreter_that_exits_is_restarted_and_the_answer_says_so(
    sandbox: Sandbox,
) -> None:
    await sandbox.create_session("code")
    old = (await _run(sandbox, "import os; os.getpid()"))["data"]["result"]
    gone = await _run(sandbox, "import os; os._exit(3)")
    assert gone["code"] == 0 and "exited (3)" in gone["data"]["note"], gone
    new = (await _run(sandbox, "import os; os.getpid()"))["data"]["result"]
    assert new != old


async def test_destroy_leaves_no_process_behind(sandbox: Sandbox) -> None:
    await sandbox.create_session("code")
    started = await _run(
        sandbox,
        f"import subprocess\nchild = subprocess.Popen(['sleep', '300'])\n{NS_CODE}",
    )
    namespace = eval(started["data"]["result"])
    assert len(sandboxes.processes_in(namespace)) >= 3  # supervisor, interpreter, sleep
    await sandbox.destroy_session("code")
    for _ in range(50):
        if not sandboxes.alive(namespace):
            break
        await asyncio.sleep(0.1)
    assert not sandboxes.alive(namespace)


async def test_bad_config_and_parameters_are_refused_clearly(sandbox: Sandbox) -> None:
    bad = await sandbox.create_session("code", {"language": "ruby"})
    assert bad["status"] == "error" and bad["code"] == ErrorCode.INITIALIZE_FAILED, bad
    assert "ruby" in bad["message"] and "python" in bad["message"]
    await sandbox.reinitialize("code", {})
    assert (await sandbox.execute("code:execute", {"code": 1}))["code"] == ErrorCode.WRONG_TYPE
    no_time = await sandbox.execute("code:execute", {"code": "1", "timeout": 0})
    assert no_time["code"] != 0
    assert (await _run(sandbox, "3"))["data"]["result"] == "3"
