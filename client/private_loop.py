"""PrivateLoop: an event loop in a daemon thread, for blocking calls from code without a loop;
``blocking`` makes a class's ``*_sync`` methods from its coroutine methods, run there.

It also serves programs that already run an event loop elsewhere, where ``asyncio.run`` would
fail. Objects made on it (a Temporal client's connection) belong to it: use them from it only.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class PrivateLoop:
    """Started on first use; ``stop`` ends it, and a later ``run`` starts a new one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name=self.name, daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)


class HasPrivateLoop(Protocol):
    """An object whose blocking calls run on its own PrivateLoop."""

    private_loop: PrivateLoop


class blocking(Generic[P, R]):  # lower case: used like a decorator, ``x_sync = blocking(x)``
    """``name_sync = blocking(name)`` in a class body: the coroutine method ``name``, run to its
    end on the instance's ``private_loop``; same parameters, same answer, same docstring."""

    def __init__(self, method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]) -> None:
        self.method = method
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> blocking[P, R]: ...
    @overload
    def __get__(self, obj: HasPrivateLoop, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, obj: HasPrivateLoop | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        method, loop = self.method, obj.private_loop

        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return loop.run(method(obj, *args, **kwargs))

        run.__name__ = self.name
        return run
