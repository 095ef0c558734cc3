"""What an operator sees: the Temporal UI in headless Chromium (Debian's, driven by Playwright)
shows a session's owner, state, deadline and last call on its workflow page.

Screenshots stay in tests/artifacts/ (not committed).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from client import SessionManager
from runtime.connection import connect
from tests.devserver import DevServer
from tests.processes import WorkerProcess
from tests.test_ui_codec import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


async def _page_text_with(page: Page, needle: str, timeout: float = 30) -> str:
    """The text of the page and its frames (the UI renders current details in a frame), once
    ``needle`` shows."""
    text = ""
    for _ in range(int(timeout * 4)):
        texts = []
        for frame in page.frames:
            try:
                texts.append(await frame.inner_text("body", timeout=2000))
            except PlaywrightError:  # a frame the page replaced meanwhile
                continue
        text = "\n".join(texts)
        if needle in text:
            return text
        await asyncio.sleep(0.25)
    raise AssertionError(f"{needle!r} never showed on {page.url}: {text[:2000]}")


@pytest.fixture
async def ui_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path / "temporal.db")  # the command ./run.sh uses, UI on
    await server.start()
    yield server
    await server.stop()


async def test_a_sessions_page_shows_owner_state_deadline_and_last_call(
    ui_server: DevServer,
) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup.sh --tests`")

    worker = await WorkerProcess.start(ui_server.address)
    try:
        client = await connect(ui_server.address)
        manager = SessionManager(client=client, user_id="ui-owner")
        record = await manager.create_session(
            "ui-owner", "analyst", resource_type="code", name="churn model"
        )
        failed = await manager.execute(record.session_id, "code:execute", {"code": "1/0"})
        assert failed["data"]["error"]["type"] == "ZeroDivisionError"
        run_id = (await client.get_workflow_handle(record.session_id).describe()).run_id
        url = (
            f"{ui_server.ui_url}/namespaces/default/workflows/{record.session_id}/{run_id}/history"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 2000})
                await page.goto(url)
                # The page renders from the UI's API: wait for the session's details to appear.
                await page.get_by_text("ui-owner", exact=False).first.wait_for(timeout=30_000)
                history = await page.inner_text("body")
                await page.screenshot(
                    path=str(ARTIFACTS / "ui-session-history.png"), full_page=True
                )
                # The session's current details are on the page's "User Metadata" tab.
                await page.goto(url.removesuffix("/history") + "/user-metadata")
                text = await _page_text_with(page, "expires")
                await page.screenshot(
                    path=str(ARTIFACTS / "ui-session-details.png"), full_page=True
                )
                await page.goto(url.removesuffix("/history") + "/metadata")  # search attributes
                attributes = await _page_text_with(page, "SessionDeadline")
                await page.screenshot(
                    path=str(ARTIFACTS / "ui-session-attributes.png"), full_page=True
                )
            finally:
                await browser.close()
        assert '"SessionUserId": "ui-owner"' in attributes
        assert '"SessionState": "active"' in attributes and '"SessionKind": "session"' in attributes
        # The timeline names each call by its tool and what it ran, and the TTL timer.
        assert "code:execute: 1/0" in history and "TTL deadline" in history
        assert "code session “churn model” of ui-owner" in text  # the details
        assert re.search(r"\bactive\b", text)  # the state
        assert re.search(r"expires \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)  # the deadline
        assert "last: code:execute → raised ZeroDivisionError" in text  # the last call
        await manager.delete_session(record.session_id)
    finally:
        await worker.stop()
