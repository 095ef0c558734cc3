"""SyncSandbox: the Sandbox API for scripts that have no event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from client.sandbox import Sandbox

T = TypeVar("T")


class SyncSandbox:
    """Blocking twin of :class:`Sandbox`; takes the same arguments.

    It runs a private event loop in a daemon thread, so it also works inside programs that
    already run an event loop elsewhere (where ``asyncio.run`` would fail).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sandbox = Sandbox(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def sandbox_id(self) -> str:
        return self._sandbox.sandbox_id

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_sync") and hasattr(Sandbox, name.removesuffix("_sync")):
            name = name.removesuffix("_sync")  # AgentFlow's names: run on this loop too
        attr = getattr(self._sandbox, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(attr(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = attr.__doc__
        return call

    def __enter__(self) -> SyncSandbox:
        self._run(self._sandbox.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run(self._sandbox.__aexit__(*exc))
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the private event loop."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
