"""SyncSandbox: the Sandbox API for scripts that have no event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from client.private_loop import PrivateLoop
from client.sandbox import Sandbox

T = TypeVar("T")


class SyncSandbox:
    """Blocking twin of :class:`Sandbox`; takes the same arguments.

    It runs a private event loop in a daemon thread (``client.private_loop``), so it also works
    inside programs that already run an event loop elsewhere.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sandbox = Sandbox(*args, **kwargs)
        self._loop = PrivateLoop(f"sync-sandbox-{self._sandbox.sandbox_id}")

    @property
    def sandbox_id(self) -> str:
        return self._sandbox.sandbox_id

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coro)

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
        self._loop.stop()
