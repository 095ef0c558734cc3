"""SyncSandbox: the Sandbox API for scripts that have no event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from client.sandbox import Sandbox


class SyncSandbox:
    """Blocking twin of :class:`Sandbox`; takes the same arguments.

    Every coroutine method of the Sandbox runs to its end on the Sandbox's own private event
    loop (``client.private_loop``), as its ``*_sync`` methods do: one way to be synchronous,
    which also works inside programs that already run an event loop elsewhere.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sandbox = Sandbox(*args, **kwargs)

    @property
    def sandbox_id(self) -> str:
        return self._sandbox.sandbox_id

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_sync") and hasattr(Sandbox, name.removesuffix("_sync")):
            name = name.removesuffix("_sync")  # AgentFlow's names: the same calls
        attr = getattr(self._sandbox, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr
        loop = self._sandbox.private_loop

        def call(*args: Any, **kwargs: Any) -> Any:
            return loop.run(attr(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = attr.__doc__
        return call

    def __enter__(self) -> SyncSandbox:
        self._sandbox.start_sync()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sandbox.__exit__(*exc)

    def stop(self) -> None:
        """Stop the private event loop."""
        self._sandbox.private_loop.stop()
