"""docs/security.md's codec recipe, as a person would use it: ``./run.sh``'s command (``python -m
cli serve``) with ``--ui-codec-endpoint``, the codec server started with ``--local-only-no-token``,
encryption keys set, and the real Temporal UI in a headless Chromium (Debian's ``chromium``,
driven by Playwright) showing a decoded value of an encrypted session on its workflow page, at
both ``http://127.0.0.1:<ui-port>`` and ``http://localhost:<ui-port>``.

The screenshots stay in tests/artifacts/ (not committed).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import Client

from cli.codec_server import TOKEN_ENV
from client import Sandbox
from runtime.encryption import KEYS_ENV, EncryptionCodec, new_key_entry
from runtime.plugin import SessionsPlugin
from tests.devserver import free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's; scripts/setup.sh --tests installs it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = new_key_entry("ui")


@asynccontextmanager
async def _process(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, ended (SIGTERM, then SIGKILL) by its own pid on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


async def _wait_until(what: str, check: object, proc: asyncio.subprocess.Process) -> None:
    """Poll ``check()`` (a callable answering truthy) until it does, or fail naming ``what``."""
    assert callable(check)
    last = "no answer yet"
    for _ in range(300):
        if proc.returncode is not None:
            raise RuntimeError(f"{what}: its process exited with {proc.returncode}")
        try:
            if await asyncio.to_thread(check):
                return
        except OSError as exc:
            last = repr(exc)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} did not answer in time (last: {last})")


async def test_the_embedded_ui_decodes_an_encrypted_session_through_the_codec_server(
    tmp_path: Path,
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup.sh --tests`")
    from playwright.async_api import Response, async_playwright  # a dev dependency

    port, ui_port, codec_port = free_port(), free_port(), free_port()
    env = {**os.environ, KEYS_ENV: KEY}
    env.pop(TOKEN_ENV, None)
    secret = f"ui-decoded-{uuid.uuid4().hex[:10]}"
    codec_url = f"http://127.0.0.1:{codec_port}"
    # The recipe's two commands (docs/security.md), on free ports.
    codec = _process(
        *(sys.executable, "-m", "cli.codec_server", "--local-only-no-token"),
        *("--port", str(codec_port), "--ui-port", str(ui_port)),
        env=env,
    )
    serve = _process(
        *(sys.executable, "-m", "cli", "serve", "--no-demo", "--backends", "bash"),
        *("--data-dir", str(tmp_path), "--port", str(port), "--ui-port", str(ui_port)),
        *("--ui-codec-endpoint", codec_url),
        env=env,
    )
    async with codec as codec_proc, serve as serve_proc:
        ui = f"http://127.0.0.1:{ui_port}"

        def ui_lists_default() -> bool:
            names = json.loads(_get(f"{ui}/api/v1/namespaces"))["namespaces"]
            return "default" in [n["namespaceInfo"]["name"] for n in names]

        def ui_knows_the_codec() -> bool:
            return json.loads(_get(f"{ui}/api/v1/settings"))["Codec"]["Endpoint"] == codec_url

        await _wait_until("the codec server", lambda: _listening(codec_port), codec_proc)
        await _wait_until("the UI", ui_lists_default, serve_proc)
        assert await asyncio.to_thread(ui_knows_the_codec)

        client = await Client.connect(
            f"127.0.0.1:{port}", plugins=[SessionsPlugin(codec=EncryptionCodec.parse(KEY))]
        )
        sandbox = Sandbox(f"ui-{uuid.uuid4().hex[:8]}", client=client)
        created = await sandbox.create_session("bash", {"env": {"GREETING": secret}})
        assert created["status"] == "success", created
        workflow_id = f"{sandbox.sandbox_id}:bash"
        run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
        plain = await Client.connect(f"127.0.0.1:{port}")  # no key: the server holds ciphertext
        history = await plain.get_workflow_handle(workflow_id).fetch_history()
        assert secret.encode() not in b"".join(e.SerializeToString() for e in history.events)

        ARTIFACTS.mkdir(exist_ok=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for host in ("127.0.0.1", "localhost"):  # both origins ./run.sh's UI has
                    page = await browser.new_page()
                    decoded: list[int] = []

                    def seen(response: Response, into: list[int] = decoded) -> None:
                        if response.url.startswith(codec_url):
                            into.append(response.status)

                    page.on("response", seen)
                    await page.goto(
                        f"http://{host}:{ui_port}/namespaces/default/workflows/"
                        f"{workflow_id}/{run_id}/history"
                    )
                    shown = page.get_by_text(secret).first  # the Input card: the session's config
                    try:
                        await shown.wait_for(timeout=30_000)
                    finally:
                        await page.screenshot(
                            path=str(ARTIFACTS / f"ui_codec_{host}.png"), full_page=True
                        )
                    assert decoded and set(decoded) == {200}, decoded
                    await page.close()
            finally:
                await browser.close()
        await sandbox.shutdown_server()
