"""A ``durable-sessions`` sandbox provider for the OpenAI Agents SDK (``agents.sandbox``).

A ``SandboxAgent``'s shell, filesystem and apply-patch tools run in a durable bash session::

    from agents import Runner
    from agents.run import RunConfig
    from agents.sandbox import SandboxAgent, SandboxRunConfig

    from integrations.agents_sandbox import (
        DurableSessionsSandboxClient,
        DurableSessionsSandboxClientOptions,
    )

    client = DurableSessionsSandboxClient()            # $TEMPORAL_ADDRESS, or address=/client=
    options = DurableSessionsSandboxClientOptions(ttl_seconds=600)
    run_config = RunConfig(sandbox=SandboxRunConfig(client=client, options=options))
    result = await Runner.run(agent, "...", run_config=run_config)

The session's state (``client.serialize_session_state``) names the durable session's workflow
(``<sandbox_id>:bash``): ``resume`` from any process reattaches to it while it lives (files,
cwd, exported variables as they are), else makes a replacement that the SDK hydrates from the
state's snapshot. Built on the public client (``client.Sandbox``); docs/openai-agents-sandbox.md.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from contract.extras import missing_extra

try:
    from agents.sandbox.errors import WorkspaceStartError
    from agents.sandbox.manifest import Manifest
    from agents.sandbox.session.manager import Instrumentation
    from agents.sandbox.session.sandbox_client import (
        BaseSandboxClient,
        BaseSandboxClientOptions,
    )
    from agents.sandbox.session.sandbox_session import SandboxSession
    from agents.sandbox.session.sandbox_session_state import SandboxSessionState
    from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
    from pydantic import Field
    from temporalio.client import Client
except ModuleNotFoundError as exc:  # the [agents] extra
    raise (missing_extra(exc, "integrations.agents_sandbox") or exc) from None

from client import Sandbox
from contract import DEFAULT_TASK_QUEUE, session_workflow_id
from integrations.agents_sandbox_session import (
    LIVE,
    WORKSPACE,
    DurableSessionsSandboxSession,
    DurableSessionsSandboxSessionState,
)

__all__ = [
    "DurableSessionsSandboxClient",
    "DurableSessionsSandboxClientOptions",
    "DurableSessionsSandboxSession",
    "DurableSessionsSandboxSessionState",
]

BACKEND_ID = "durable_sessions"


class DurableSessionsSandboxClientOptions(BaseSandboxClientOptions):
    """How a new durable session is made (the SDK's ``options=``)."""

    type: Literal["durable_sessions"] = "durable_sessions"
    #: The sandbox whose bash session this is (workflow ``<sandbox_id>:bash``); default
    #: ``agents-<12 hex>``. Naming one lets any process reach the same session.
    sandbox_id: str | None = None
    #: Owner fields recorded on the session (``SessionManager`` reads them; ownership checks).
    user_id: str | None = None
    agent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Seconds without a call before the session expires (default: the client's, 300).
    ttl_seconds: float | None = None
    #: The bash session's config: ``env``, ``max_output_bytes``, ``workspace_snapshot_mb`` and
    #: the jail's keys (``memory_mb``, ``cpu_percent``, ``network``...: docs/security.md).
    config: dict[str, Any] = Field(default_factory=dict)
    #: The session workers' task queue (default ``durable-sessions``).
    task_queue: str | None = None
    #: ``exec("sh", "-c", SCRIPT)`` (the shell tool's form) runs SCRIPT in the session's
    #: persistent bash, so ``cd`` and ``export`` carry over to later commands; False runs every
    #: exec as a child process, as the SDK's other providers do.
    persistent_shell: bool = True
    #: ``delete`` (the Runner's cleanup after a run it owns) leaves the session to its TTL
    #: instead of destroying it, so the next run's ``resume`` reattaches to the same shell.
    keep_on_delete: bool = False
    #: The SDK's interactive processes (``write_stdin``), over the shell's soft timeouts:
    #: ``exec_command`` answers once its command ends or goes quiet for its yield time, and the
    #: model polls or feeds it (integrations/agents_sandbox_pty.py). Off: every command is one
    #: ``exec`` bounded by the yield time (the shell tool's default, 10 s).
    pty: bool = False
    #: The bound of an ``exec`` that names no timeout (seconds). Up to 30 s a call runs on the
    #: session's fast path (a local activity); a longer bound costs a regular activity.
    exec_timeout: float = Field(default=30.0, gt=0, le=86400)


class DurableSessionsSandboxClient(BaseSandboxClient[DurableSessionsSandboxClientOptions | None]):
    """Creates, resumes and deletes durable bash sessions for ``SandboxAgent`` runs.

    Connection settings are this process's, never part of a session's state: ``address`` and
    ``namespace`` (default ``$TEMPORAL_ADDRESS`` and Temporal's other variables), or ``client``
    a connected ``temporalio`` client (with the session workers' data converter), or
    ``server_url`` (and ``api_key``) for the HTTP API.
    """

    backend_id = BACKEND_ID
    supports_default_options = True

    def __init__(
        self,
        *,
        address: str | None = None,
        namespace: str | None = None,
        client: Client | None = None,
        server_url: str | None = None,
        api_key: str | None = None,
        instrumentation: Instrumentation | None = None,
        dependencies: Any = None,
    ) -> None:
        self._address, self._namespace, self._client = address, namespace, client
        self._server_url, self._api_key = server_url, api_key
        self._instrumentation = instrumentation or Instrumentation()
        self._dependencies = dependencies

    async def sandbox_for(self, state: DurableSessionsSandboxSessionState) -> Sandbox:
        """A started ``client.Sandbox`` for the state's sandbox, sharing one connection."""
        sandbox = Sandbox(
            state.sandbox_id,
            address=self._address,
            namespace=self._namespace,
            client=self._client,
            server_url=self._server_url,
            api_key=self._api_key,
            user_id=state.user_id,
            agent_id=state.agent_id,
            metadata=state.metadata,
            session_ttl=state.ttl_seconds,
            task_queue=state.task_queue or DEFAULT_TASK_QUEUE,
            destroy_on_exit=False,
        )
        await sandbox.start()
        if self._client is None and self._server_url is None:
            self._client = sandbox.client  # the next sessions reuse this connection
        return sandbox

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: DurableSessionsSandboxClientOptions | None = None,
    ) -> SandboxSession:
        options = options or DurableSessionsSandboxClientOptions()
        manifest = self._validate_manifest_for_create(manifest or Manifest())
        _check_root(manifest)
        session_id = uuid.uuid4()
        sandbox_id = options.sandbox_id or f"agents-{session_id.hex[:12]}"
        state = DurableSessionsSandboxSessionState(
            session_id=session_id,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            manifest=manifest,
            sandbox_id=sandbox_id,
            workflow_id=session_workflow_id(sandbox_id, "bash"),
            **options.model_dump(exclude={"type", "sandbox_id"}),
        )
        sandbox = await self.sandbox_for(state)
        # A named sandbox whose session lives is reattached to, as resume does.
        existed = await _open(sandbox, state)
        inner = DurableSessionsSandboxSession(state=state, sandbox=sandbox, reattached=existed)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        """Reattach to the state's durable session while it lives; else open a replacement
        (same sandbox id, a new workflow run) that ``start()`` hydrates from the snapshot."""
        if not isinstance(state, DurableSessionsSandboxSessionState):
            raise TypeError("DurableSessionsSandboxClient.resume expects its own session state")
        state.assert_path_grants_rebound()
        _check_root(state.manifest)
        sandbox = await self.sandbox_for(state)
        view = await sandbox.describe_session(state.resource_type)
        live = view is not None and str(view.get("status")) in LIVE
        if not live:
            state.replacements += 1
            state.workspace_root_ready = False
            await _open(sandbox, state)
        inner = DurableSessionsSandboxSession(state=state, sandbox=sandbox, reattached=live)
        return self._wrap_session(inner, instrumentation=self._instrumentation)

    async def delete(self, session: SandboxSession) -> SandboxSession:
        """Destroy the durable session (unless ``keep_on_delete``) and drop its connection."""
        inner = session._inner
        if not isinstance(inner, DurableSessionsSandboxSession):
            raise TypeError("DurableSessionsSandboxClient.delete expects its own session")
        try:
            if not inner.state.keep_on_delete:
                await inner.sandbox.destroy_session(inner.state.resource_type)
        finally:
            await inner.sandbox.close()
        return session

    def deserialize_session_state(
        self, payload: dict[str, object]
    ) -> DurableSessionsSandboxSessionState:
        state = self._deserialize_session_state_payload(payload, DurableSessionsSandboxSessionState)
        assert isinstance(state, DurableSessionsSandboxSessionState)
        return state


async def _open(sandbox: Sandbox, state: DurableSessionsSandboxSessionState) -> bool:
    """Open the durable session; True when it was open already. A refusal raises."""
    answer = await sandbox.create_session(state.resource_type, state.config)
    if answer.get("status") not in ("success", "exists"):
        raise WorkspaceStartError(
            path=Path(state.manifest.root),
            message=f"durable session {state.workflow_id} could not be opened: "
            f"{answer.get('message') or answer.get('error') or answer}",
        )
    return answer.get("status") == "exists"


def _check_root(manifest: Manifest) -> None:
    root = manifest.root.rstrip("/") or "/"
    if root != WORKSPACE and not root.startswith(WORKSPACE + "/"):
        raise ValueError(
            f"a durable session's workspace is {WORKSPACE}: Manifest.root must lie in it "
            f"(got {manifest.root!r})"
        )
