"""Sandbox: the seed-compatible client. One sandbox owns at most one session per resource type.

It also takes AgentFlow's constructor, calls and answer shapes, so code written for AgentFlow's
``Sandbox`` runs unchanged: with ``server_url=`` it talks HTTP to our server (``durable-sessions
http``), otherwise straight to Temporal. Which one is chosen once, in the constructor: the engine
(``client.engine``) does the calls, ``client.agentflow`` gives the answers their shapes.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

from temporalio.client import Client
from temporalio.service import RPCError

from client.agentflow import (
    SessionList,
    check_options,
    create_answer,
    create_entry,
    destroy_answer,
    merged_params,
    refresh_answer,
    wanted_sessions,
)
from client.catalog import ToolCatalog
from client.engine import Engine, open_checked
from client.errors import SessionError
from client.http_engine import HttpEngine
from client.private_loop import PrivateLoop, blocking
from client.streams import follow_call, watch_output
from client.temporal_engine import TemporalEngine
from client.tool_calls import refused
from client.transport import call_problem, checked_id
from client.workspace_files import DOWNLOAD_CHUNK_BYTES, UPLOAD_CHUNK_BYTES, download, upload
from contract import (
    DEFAULT_TASK_QUEUE,
    DEFAULT_TTL_SECONDS,
    ErrorCode,
    OutputChunk,
    session_workflow_id,
)
from contract.limits import MAX_TTL_SECONDS, number_problem


def _ttl_from(config: Mapping[str, Any] | None, session_ttl: float | None) -> float:
    """The session TTL from the argument, the config or ``$SESSION_TTL``; ValueError when it is
    not a finite number of seconds in range."""
    value: Any = session_ttl
    if value is None:
        value = (config or {}).get("server", {}).get("session_ttl")
    if value is None:
        value = float(os.environ.get("SESSION_TTL", DEFAULT_TTL_SECONDS))
    problem = number_problem("session_ttl", value, MAX_TTL_SECONDS)
    if problem is not None:
        raise ValueError(problem)
    return float(value)


def _unanswered(exc: SessionError) -> bool:
    """No worker answered in time: refresh, reinitialize and destroy raise it (it says
    nothing about whether the session exists)."""
    return exc.code == ErrorCode.UNAVAILABLE


class Sandbox:
    """A client identity whose sessions are durable Temporal workflows.

    Who it is: ``sandbox_id`` (``worker_id``, AgentFlow's name; generated when absent; a URL here
    is taken as ``server_url``); ``user_id``, ``agent_id`` and ``metadata``, recorded on every
    session made here (see SessionManager for owner-scoped access); ``admin``: requests reach
    every user's sessions (operators' tools; off by default).

    How its sessions live: ``session_ttl``, seconds an idle session lives (default
    ``config["server"]["session_ttl"]``, then ``$SESSION_TTL``, then 300); ``destroy_on_exit``:
    ``async with`` destroys the sessions made here on exit; ``after_expiry``: what ``execute``
    does when this sandbox's session of that type expired or failed, ``"error"`` (default,
    4010 saying when and why: its state is gone) or ``"temporary"`` (a fresh temporary
    session, as AgentFlow does). A session never made, or destroyed, always falls back to a
    temporary one. ``warmup_resources``: backends ``start()`` warms.

    Straight to Temporal: ``address`` (default ``$TEMPORAL_ADDRESS``, then ``localhost:7233``),
    ``namespace`` (``$TEMPORAL_NAMESPACE``, then ``default``), or an already connected
    ``client``; ``task_queue``; ``tools``, a tool catalog shared between many Sandboxes.

    Over HTTP to our server: ``server_url``; ``api_key`` (default
    ``$DURABLE_SESSIONS_API_KEY``; the server sets the owner from it); ``timeout``, seconds a
    request may take at least (a call waits its own tool timeout plus 60 s when longer);
    ``retry_count``, attempts for a request that cannot connect or times out.

    AgentFlow: ``config`` may be its ``SandboxConfig`` (``server_url``, ``worker_id``,
    ``timeout``, ``retry_count`` and ``warmup_resources`` are read); its server options
    (``auto_start_server``...) are accepted and ignored.
    """

    def __init__(
        self,
        sandbox_id: str | None = None,
        address: str | None = None,
        namespace: str | None = None,
        *,
        worker_id: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        admin: bool = False,
        session_ttl: float | None = None,
        destroy_on_exit: bool = True,
        after_expiry: Literal["error", "temporary"] = "error",
        warmup_resources: Iterable[str] | None = None,
        client: Client | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        tools: ToolCatalog | None = None,
        server_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry_count: int = 3,
        config: Any = None,
        **agentflow_options: Any,
    ) -> None:
        check_options(agentflow_options)
        if config is not None and not isinstance(config, Mapping):
            # AgentFlow's SandboxConfig: its fields, unless given as arguments.
            server_url = server_url or getattr(config, "server_url", None)
            worker_id = worker_id or getattr(config, "worker_id", None)
            timeout = getattr(config, "timeout", None) or timeout
            retry_count = getattr(config, "retry_count", None) or retry_count
            warmup_resources = warmup_resources or getattr(config, "warmup_resources", None)
            config = None
        if sandbox_id and sandbox_id.startswith(("http://", "https://")):
            server_url, sandbox_id = server_url or sandbox_id, None
        self.sandbox_id = checked_id(
            sandbox_id or worker_id or f"sandbox-{uuid.uuid4().hex[:12]}", "sandbox_id"
        )
        self.user_id, self.agent_id, self.admin = user_id, agent_id, admin
        self.metadata = dict(metadata or {})
        self.session_ttl = _ttl_from(config, session_ttl)
        self.destroy_on_exit, self.after_expiry = destroy_on_exit, after_expiry
        self.warmup_resources = list(warmup_resources or [])
        self.address, self.namespace, self.task_queue = address, namespace, task_queue
        self.server_url, self.timeout = server_url, float(timeout)
        self._engine: Engine = (
            HttpEngine(
                server_url,
                worker_id=self.sandbox_id,
                api_key=api_key,
                timeout=self.timeout,
                retry_count=retry_count,
                session_ttl=self.session_ttl,
            )
            if server_url
            else TemporalEngine(
                self, address=address, namespace=namespace, client=client, tools=tools
            )
        )
        self._started = False
        #: Where the ``*_sync`` methods run, started on first use.
        self.private_loop = PrivateLoop(f"sandbox-{self.sandbox_id}")

    # --- connection --------------------------------------------------------------------------

    async def start(self, warmup_resources: Iterable[str] | None = None) -> Sandbox:
        """Connect to Temporal, or check that the HTTP server answers (raises if it cannot be
        reached); then warm ``warmup_resources`` (default: the constructor's)."""
        await self._engine.start()
        first = not self._started
        self._started = True
        names = list(warmup_resources or (self.warmup_resources if first else []))
        if names:
            await self.warmup(names)
        return self

    @property
    def client(self) -> Client:
        """The Temporal client (RuntimeError before ``start``, or over HTTP)."""
        return self._engine.client

    @property
    def worker_id(self) -> str:
        """AgentFlow's name for ``sandbox_id``."""
        return self.sandbox_id

    @property
    def is_started(self) -> bool:
        return self._started

    @property
    def is_connected(self) -> bool:
        return self._engine.connected

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.destroy_on_exit and self.is_connected and self._engine.created:
            await self.destroy_session(sorted(self._engine.created))
        await self.close()

    async def close(self) -> None:
        """Close the client only; sessions live on until their TTL."""
        await self._engine.close()
        self._started = False

    # --- sessions ----------------------------------------------------------------------------

    async def create_session(
        self,
        resource_type: str | Iterable[str] | Mapping[str, Mapping[str, Any] | None],
        config: Mapping[str, Any] | None = None,
        *,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        """Create a session (or several); an existing one answers with its status.

        A ``custom_name`` key in a config names the session (``session_name``); ``ttl`` is the
        new sessions' TTL (default the sandbox's ``session_ttl``). AgentFlow's answer:
        ``status``, ``create_time_ms``, ``total``, ``success`` and ``sessions`` (one line per
        resource type). For one type the session's own fields are at the top too, with
        ``status`` ``success``, ``exists`` or ``error``; for several ``status`` is ``success``,
        ``partial`` or ``error``.
        """
        started = time.perf_counter()
        wanted = wanted_sessions(resource_type, config)
        configs = {k: {n: v for n, v in c.items() if n != "custom_name"} for k, c in wanted.items()}
        names = {k: str(c.get("custom_name") or "") for k, c in wanted.items()}
        opened = await asyncio.gather(
            *(
                open_checked(self._engine, self.sandbox_id, k, configs[k], names[k], ttl)
                for k in wanted
            )
        )
        entries = {k: create_entry(o, configs[k]) for k, o in zip(wanted, opened, strict=True)}
        single = opened[0] if isinstance(resource_type, str) else None
        return create_answer(entries, started, single=single)

    async def execute(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run a tool; always answers with an envelope dict.

        Uses the sandbox's live session for the tool's resource type, or a temporary session
        when there is none. ``action`` is ``"<resource>:<action>"``, or an action only one
        resource has (``"run"``). ``request_id`` (generated when absent) is the Temporal update
        id: a retried call with the same id runs once. ``session_id`` pins the call to one
        instance. ``timeout`` (AgentFlow's): the tool's own ``timeout`` parameter when it has
        one, else how long to wait for the answer (code 5006 after it; the call goes on).
        Other keyword arguments are added to ``params`` (AgentFlow's rule); ``trace_id`` is
        answered in ``meta`` (default: the call's OpenTelemetry trace, or a new id).
        """
        request_id = request_id or uuid.uuid4().hex
        problem = call_problem(action, params, kwargs)
        if problem is not None:
            return refused(action, problem, request_id, session_id, trace_id)
        return await self._engine.execute(
            action,
            merged_params(params, kwargs),
            timeout,
            request_id=request_id,
            session_id=session_id,
            trace_id=trace_id,
        )

    async def execute_stream(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[OutputChunk | dict[str, Any]]:
        """Run a tool as :meth:`execute` does and see its output while it runs: ``OutputChunk``s
        (``text`` printed on ``stream``, ``stdout`` or ``stderr``; a ``note`` when the live output
        stops early), then the envelope dict :meth:`execute` answers (with all the output).

        The output comes through the sandbox's session of the tool's resource type (create it
        first). A call answered elsewhere (a temporary session, a shared tool, over HTTP) yields
        its envelope only. Each chunk's ``offset`` is its place in the session's stream, where
        another reader can :meth:`watch` from.
        """
        request_id = request_id or uuid.uuid4().hex
        problem = call_problem(action, params, kwargs)
        if problem is not None:
            yield refused(action, problem, request_id, session_id, trace_id)
            return
        answer = asyncio.ensure_future(
            self._engine.execute(
                action,
                merged_params(params, kwargs),
                timeout,
                request_id=request_id,
                session_id=session_id,
                trace_id=trace_id,
                stream=True,
            )
        )
        target = await self._engine.stream_target(action)
        if target is None:
            yield await answer
            return
        async for item in follow_call(self.client, target, request_id, answer):
            yield item

    def watch(
        self, resource_type: str, from_offset: int = 0, *, request_id: str | None = None
    ) -> AsyncIterator[OutputChunk]:
        """The live output of this sandbox's session of ``resource_type`` (every streaming call's,
        or one's: ``request_id``) from ``from_offset`` on, as it arrives; resume from the last
        chunk's ``offset`` + 1. Ends when the session has closed (see
        :func:`client.streams.watch_output`, which takes any session's workflow id)."""
        workflow_id = session_workflow_id(self.sandbox_id, resource_type)
        return watch_output(self.client, workflow_id, from_offset, request_id=request_id)

    async def execute_batch(
        self,
        actions: Iterable[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
        *,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Several calls, ``{"action", "params", "timeout"}`` each, one after another (stopping
        at the first failure when ``stop_on_error``) or all at once (``parallel``).

        Answers an envelope whose ``data`` has ``results`` (one envelope per call run),
        ``total``, ``executed`` and ``success_count``; its code is 0, 5009 (none succeeded) or
        5010 (some failed).
        """
        items = [dict(a) if isinstance(a, Mapping) else {"action": a} for a in actions]
        trace_id = trace_id or uuid.uuid4().hex
        return await self._engine.execute_batch(items, parallel, stop_on_error, trace_id)

    async def refresh_sessions(
        self, resource_type: str | Iterable[str] | None = None, *, ttl: float | None = None
    ) -> dict[str, Any]:
        """Move the deadline of one, several or all of this sandbox's sessions.

        Answers ``status`` (success, partial, not_found), ``refreshed`` (the views),
        ``not_found``, and AgentFlow's ``refreshed_count``, ``details`` (``expires_at`` per
        type), plus ``expires_at`` and ``session_id`` at the top for one type.
        """
        types = await self._types(resource_type)
        refreshed: dict[str, dict[str, Any]] = {}
        failed: dict[str, tuple[int, str]] = {}
        for rt in types:
            try:
                refreshed[rt] = await self._engine.refresh(rt, ttl)
            except SessionError as exc:
                if _unanswered(exc):
                    raise
                failed[rt] = (exc.code, exc.message)
            except RPCError as exc:
                failed[rt] = (ErrorCode.NO_SESSION, str(exc))
        return refresh_answer(types, refreshed, failed, resource_type)

    async def reinitialize(
        self, resource_type: str, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace a session's instance with one made from ``config``; other sessions untouched.

        Answers ``status``, ``old_session_id``, ``new_session_id``, ``config_applied`` and
        AgentFlow's ``resource_type``, ``new_session_name``, ``reinit_time_ms`` (``error`` when
        it failed). A ``custom_name`` key renames the session.
        """
        started = time.perf_counter()
        wanted = dict(config or {})
        name = str(wanted.pop("custom_name", "") or "")
        result = await self._engine.reinitialize(resource_type, wanted, name)
        result["resource_type"] = resource_type
        result["reinit_time_ms"] = (time.perf_counter() - started) * 1000
        if result.get("status") == "error":
            result.setdefault("error", result.get("message", ""))
        return result

    async def list_sessions(self) -> SessionList:
        """This sandbox's live sessions (from Temporal visibility plus the ones made here): a
        list, as AgentFlow answers, each with ``resource_type``, ``session_id``,
        ``session_name``, ``status``, ``expires_at`` and the session's whole view; the earlier
        ``answer["sessions"]`` still works. A Sandbox with a ``user_id`` sees no other user's."""
        return SessionList(await self._engine.list_sessions())

    async def describe_session(self, resource_type: str) -> dict[str, Any] | None:
        """The full view of one session (state, instance, deadline, calls), or None. Raises
        PermissionDenied for another user's session."""
        return await self._engine.describe(resource_type)

    async def get_events(self, resource_type: str, **query: Any) -> dict[str, Any]:
        """A page of a session's event log (start_id, end_id, reverse, kind, limit <= 100)."""
        return await self._engine.events(resource_type, query)

    async def destroy_session(
        self, resource_type: str | Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Destroy one, several or all (None) of this sandbox's sessions; cleanup runs first.

        Answers AgentFlow's ``status`` (success, or partial when one was missing or refused),
        ``total``, ``success``, ``details`` (per type: status, session_id, message), and our
        ``destroyed`` (the final views) and ``not_found``.
        """
        types = await self._types(resource_type)
        destroyed: dict[str, dict[str, Any]] = {}
        failed: dict[str, tuple[int, str]] = {}
        for rt in types:
            try:
                destroyed[rt] = await self._engine.destroy(rt)
            except SessionError as exc:
                if _unanswered(exc):
                    raise
                failed[rt] = (exc.code, exc.message)
            self._engine.created.discard(rt)
        return destroy_answer(types, destroyed, failed)

    async def _types(self, resource_type: str | Iterable[str] | None) -> list[str]:
        if isinstance(resource_type, str):
            return [resource_type]
        if resource_type is not None:
            return list(resource_type)
        return [s["resource_type"] for s in await self.list_sessions()]

    # --- backends and tools ------------------------------------------------------------------

    async def warmup(self, resources: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Warm backends on a worker (all when None) before the first call needs them:
        ``resources`` is one resource type (``"bash"``), several, or None.

        Answers ``status`` (success or error), ``warmed``, ``worker``, ``tools``, and AgentFlow's
        ``results`` (name: warmed), ``summary`` (and ``errors`` when it failed).
        """
        if isinstance(resources, str):
            names: list[str] | None = [resources]  # a str is one name, not its characters
        else:
            names = list(resources) if resources is not None else None
        return await self._engine.warmup(names)

    async def get_warmup_status(self) -> dict[str, Any]:
        """Every backend the workers offer, and whether it was warmed through this client:
        ``{"backends": {name: {"loaded", "warmed_up"}}, "summary": {...}}``."""
        return await self._engine.warmup_status()

    async def get_tools(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Every tool the workers offer, as AgentFlow lists them (``name``, ``full_name``,
        ``resource_type``, ``stateless``, ``description``) plus ``params_schema``."""
        return await self._engine.tools(include_hidden)

    async def get_tool_schema(self, tool_name: str) -> dict[str, Any] | None:
        """One tool (full or simple name), as ``get_tools`` lists it; None when unknown."""
        return await self._engine.tool_schema(tool_name)

    async def get_status(self) -> dict[str, Any]:
        """AgentFlow's status envelope: ``data`` has ``worker_id``, ``active_resources``,
        ``sessions`` (per type: session_id, status, created_at, last_activity) and
        ``tools_available``."""
        return await self._engine.status()

    async def shutdown_server(self) -> dict[str, Any]:
        """Destroy every session of this sandbox. Workers keep running for other sandboxes;
        each runs its backends' ``shutdown`` when it stops."""
        return await self.destroy_session(None)

    # --- files in a session's workspace ------------------------------------------------------

    async def upload(
        self,
        local: str | os.PathLike[str],
        remote: str,
        resource_type: str = "bash",
        *,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
    ) -> dict[str, Any]:
        """Copy a local file into the workspace of this sandbox's ``resource_type`` session.

        Sent as ``<resource_type>:write_file`` calls of ``chunk_bytes`` each (base64; a call's
        parameters are at most 1 MiB), each written at its offset, so a retried chunk is
        harmless; chunks over 256 KiB leave history through external storage. The workspace's
        snapshot waits for the last chunk. ``remote`` is relative to the workspace or absolute
        inside it. Returns the last call's data (``path``, ``size``); raises
        :class:`SessionError` with the envelope's code when a call fails.
        """
        return await upload(self.execute, local, remote, resource_type, chunk_bytes)

    async def download(
        self,
        remote: str,
        local: str | os.PathLike[str],
        resource_type: str = "bash",
        *,
        chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
    ) -> dict[str, Any]:
        """Copy a file of the ``resource_type`` session's workspace to ``local`` (replaced once
        complete), in ``<resource_type>:read_file`` calls of ``chunk_bytes`` each (at most
        4 MiB; answers over 256 KiB leave history through external storage). Returns ``path``
        and ``size``; raises :class:`SessionError` when a call fails or the file changed
        size meanwhile."""
        return await download(self.execute, remote, local, resource_type, chunk_bytes)

    # --- AgentFlow's synchronous flavour -----------------------------------------------------
    # Each runs its coroutine twin on this Sandbox's private event loop, so they work with or
    # without an event loop in the caller. Use either them or the async calls on one Sandbox:
    # its connection belongs to the loop that made it.

    start_sync = blocking(start)
    warmup_sync = blocking(warmup)
    get_warmup_status_sync = blocking(get_warmup_status)
    create_session_sync = blocking(create_session)
    destroy_session_sync = blocking(destroy_session)
    list_sessions_sync = blocking(list_sessions)
    execute_sync = blocking(execute)
    execute_batch_sync = blocking(execute_batch)
    reinitialize_sync = blocking(reinitialize)
    refresh_sessions_sync = blocking(refresh_sessions)
    get_tools_sync = blocking(get_tools)
    get_status_sync = blocking(get_status)
    shutdown_server_sync = blocking(shutdown_server)

    def close_sync(self) -> None:
        try:
            if self.private_loop.started:
                self.private_loop.run(self.close())
        finally:
            self.private_loop.stop()

    def __enter__(self) -> Sandbox:
        return self.start_sync()

    def __exit__(self, *exc: object) -> None:
        try:
            self.private_loop.run(self.__aexit__(*exc))
        finally:
            self.private_loop.stop()
