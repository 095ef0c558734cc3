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

from client.agentflow import (
    Reach,
    SessionList,
    check_options,
    create_answer,
    create_entry,
    destroy_answer,
    refresh_answer,
    session_ttl_from,
    wanted_sessions,
)
from client.catalog import ToolCatalog
from client.engine import Engine, each_type, open_checked, send_call
from client.forking import checked_count, forked_sandbox
from client.http_engine import HttpEngine, public_url
from client.private_loop import PrivateLoop, blocking
from client.streams import follow_call, watch_output
from client.temporal_engine import TemporalEngine
from client.transport import call_problem, checked_id
from client.workspace_files import DOWNLOAD_CHUNK_BYTES, UPLOAD_CHUNK_BYTES, download, upload
from contract import (
    DEFAULT_TASK_QUEUE,
    OutputChunk,
    session_workflow_id,
)


class Sandbox:
    """A client identity whose sessions are durable Temporal workflows.

    Its parameters, by group (every one a keyword after ``sandbox_id``, ``address``,
    ``namespace``):

    - who it is: ``sandbox_id`` (``worker_id`` is AgentFlow's name; generated when absent; a
      URL is taken as ``server_url``), and ``user_id``, ``agent_id``, ``metadata`` recorded on
      every session made here; ``admin`` reaches every user's sessions (operators' tools).
    - how its sessions live: ``session_ttl`` (seconds idle; default the config's
      ``server.session_ttl``, then ``$SESSION_TTL``, then 300); ``destroy_on_exit`` (``async
      with`` destroys the sessions made here); ``after_expiry``: ``"error"`` (default) answers
      4010 when this sandbox's session expired or failed, since its state is gone,
      ``"temporary"`` runs the call in a fresh temporary session as AgentFlow does (a session
      never made, or destroyed, always does); ``warmup_resources``, warmed by ``start()``.
    - how its calls are checked: ``strict_params`` (default False) answers 4000 for a parameter
      a tool does not declare; without it the parameter is dropped and named in
      ``meta.ignored_params`` (AgentFlow's tools take ``**kwargs``). Per call: ``execute(...,
      strict_params=True)``.
    - straight to Temporal: ``address`` (default ``$TEMPORAL_ADDRESS``, then
      ``localhost:7233``), ``namespace``, or a connected ``client``; ``task_queue``; ``tools``,
      a catalog shared between Sandboxes.
    - over HTTP to our server: ``server_url``; ``api_key`` (default
      ``$DURABLE_SESSIONS_API_KEY``); ``timeout`` (seconds a request may take at least; a
      call waits its tool timeout plus 60 s when longer); ``retry_count``.
    - AgentFlow: ``config``, its ``SandboxConfig`` (server_url, worker_id, timeout,
      retry_count, warmup_resources read) or ``{"server": {...}}``; its server options
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
        strict_params: bool = False,
        **agentflow_options: Any,
    ) -> None:
        check_options(agentflow_options)
        reach = Reach(server_url, worker_id, timeout, retry_count, warmup_resources)
        if config is not None and not isinstance(config, Mapping):
            reach, config = reach.read(config), None  # AgentFlow's SandboxConfig
        if sandbox_id and sandbox_id.startswith(("http://", "https://")):
            reach, sandbox_id = reach.at(sandbox_id), None  # AgentFlow's first argument
        self.sandbox_id = checked_id(
            sandbox_id or reach.worker_id or f"sandbox-{uuid.uuid4().hex[:12]}", "sandbox_id"
        )
        self.user_id, self.agent_id, self.admin = user_id, agent_id, admin
        self.metadata = dict(metadata or {})
        self.session_ttl = session_ttl_from(config, session_ttl)
        self.destroy_on_exit, self.after_expiry = destroy_on_exit, after_expiry
        self.warmup_resources = list(reach.warmup_resources or [])
        self.address, self.namespace, self.task_queue = address, namespace, task_queue
        self.server_url, self.timeout = public_url(reach.server_url), float(reach.timeout)
        self.strict_params = strict_params
        self._engine: Engine = (
            HttpEngine.of(self, reach.server_url, api_key, reach.retry_count)
            if reach.server_url
            else TemporalEngine(self, address, namespace, client=client, tools=tools)
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
        idle_suspend_seconds: float | None = None,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        """Create a session (or several); an existing one answers with its status.

        A ``custom_name`` key in a config names the session (``session_name``); ``ttl`` is the
        new sessions' TTL (default the sandbox's ``session_ttl``); ``idle_suspend_seconds``
        suspends one that long idle, and a call resumes it unless ``auto_resume`` is False
        (docs/fork-and-suspend.md). AgentFlow's answer:
        ``status``, ``create_time_ms``, ``total``, ``success`` and ``sessions`` (one line per
        resource type). For one type the session's own fields are at the top too, with
        ``status`` ``success``, ``exists`` or ``error``; for several ``status`` is ``success``,
        ``partial`` or ``error``.
        """
        started = time.perf_counter()
        wanted = wanted_sessions(resource_type, config)
        configs = {k: {n: v for n, v in c.items() if n != "custom_name"} for k, c in wanted.items()}
        names = {k: str(c.get("custom_name") or "") for k, c in wanted.items()}
        options = {"idle_suspend_seconds": idle_suspend_seconds, "auto_resume": auto_resume}
        opened = await asyncio.gather(
            *(
                open_checked(self._engine, self.sandbox_id, k, configs[k], names[k], ttl, options)
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
        strict_params: bool | None = None,
        auto_resume: bool | None = None,
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
        A parameter the tool does not declare is dropped and named in ``meta.ignored_params``;
        ``strict_params=True`` (default the sandbox's) answers 4000 for it instead.
        ``auto_resume=False``: a paused session answers 4007 (default: the session's setting).
        """
        request_id = request_id or uuid.uuid4().hex
        call = (action, params, timeout, kwargs, request_id, session_id, trace_id)
        strict = self.strict_params if strict_params is None else strict_params
        return await send_call(self._engine, *call, strict_params=strict, auto_resume=auto_resume)

    async def execute_stream(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        strict_params: bool | None = None,
        auto_resume: bool | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[OutputChunk | dict[str, Any]]:
        """Run a tool as :meth:`execute` does, seeing its output while it runs: ``OutputChunk``s
        (``text`` on ``stream``, ``stdout`` or ``stderr``; a ``note`` when the live output stops
        early), then :meth:`execute`'s envelope. The output comes through the sandbox's session
        of the tool's type (create it first); a call answered elsewhere (a temporary session, a
        shared tool, over HTTP) yields its envelope only. A chunk's ``offset`` is its place in
        the session's stream, where another reader can :meth:`watch` from."""
        request_id = request_id or uuid.uuid4().hex
        call = (action, params, timeout, kwargs, request_id, session_id, trace_id)
        strict = self.strict_params if strict_params is None else strict_params
        answer = asyncio.ensure_future(
            send_call(
                self._engine, *call, stream=True, strict_params=strict, auto_resume=auto_resume
            )
        )
        target = None
        if call_problem(action, params, kwargs) is None:  # a refused call has no output
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
        strict_params: bool | None = None,
    ) -> dict[str, Any]:
        """Several calls, ``{"action", "params", "timeout"}`` each, one after another (stopping
        at the first failure when ``stop_on_error``) or all at once (``parallel``).

        Answers an envelope whose ``data`` has ``results`` (one envelope per call run),
        ``total``, ``executed`` and ``success_count``; its code is 0, 5009 (none succeeded) or
        5010 (some failed). ``strict_params`` (default the sandbox's) applies to each call that
        does not say (an action's own ``"strict_params"``), as in :meth:`execute`.
        """
        strict = self.strict_params if strict_params is None else strict_params
        items = [dict(a) if isinstance(a, Mapping) else {"action": a} for a in actions]
        for item in items:
            item.setdefault("strict_params", strict)
        trace_id = trace_id or uuid.uuid4().hex
        return await self._engine.execute_batch(items, parallel, stop_on_error, trace_id)

    async def fork(
        self,
        resource_type: str,
        n: int = 1,
        *,
        from_checkpoint: str | None = None,
        ttl: float | None = None,
    ) -> list[Sandbox]:
        """``n`` (1..32) new sessions from this sandbox's ``resource_type`` session as it is now
        (or at ``from_checkpoint``), each in a started Sandbox of its own: the parent's
        workspace, working directory and exported variables, owner and options (``ttl``: a new
        TTL); independent of each other and of the parent (docs/fork-and-suspend.md). Raises
        SessionError (4000, 4008 unknown checkpoint, 4010 closed, 4012 not the owner)."""
        views = await self._engine.fork(resource_type, checked_count(n), from_checkpoint, ttl)
        return [
            await forked_sandbox(self, self._engine, v["sandbox_id"], resource_type) for v in views
        ]

    async def refresh_sessions(
        self, resource_type: str | Iterable[str] | None = None, *, ttl: float | None = None
    ) -> dict[str, Any]:
        """Move the deadline of one, several or all of this sandbox's sessions.

        Answers ``status`` (success, partial, not_found), ``refreshed`` (the views),
        ``not_found``, and AgentFlow's ``refreshed_count``, ``details`` (``expires_at`` per
        type), plus ``expires_at`` and ``session_id`` at the top for one type.
        """
        types = await self._types(resource_type)
        refresh = self._engine.refresh
        refreshed, failed = await each_type(types, lambda rt: refresh(rt, ttl), rpc_refusals=True)
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
        settled = self._engine.created.discard
        destroyed, failed = await each_type(types, self._engine.destroy, settled=settled)
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
        """Copy a local file into the workspace of this sandbox's ``resource_type`` session
        (``remote``: relative to it, or absolute inside it), in ``write_file`` calls; the last
        call's data (``path``, ``size``). See :func:`client.workspace_files.upload`."""
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
        complete), in ``read_file`` calls; ``path`` and ``size``. See
        :func:`client.workspace_files.download`."""
        return await download(self.execute, remote, local, resource_type, chunk_bytes)

    # --- AgentFlow's synchronous flavour: each runs its coroutine twin on the private loop, with
    # or without a loop in the caller. Use them or the async calls on one Sandbox, not both.

    start_sync = blocking(start)
    warmup_sync = blocking(warmup)
    get_warmup_status_sync = blocking(get_warmup_status)
    create_session_sync = blocking(create_session)
    destroy_session_sync = blocking(destroy_session)
    list_sessions_sync = blocking(list_sessions)
    execute_sync = blocking(execute)
    execute_batch_sync = blocking(execute_batch)
    fork_sync = blocking(fork)
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
