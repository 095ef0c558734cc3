"""``durable-sessions mcp``: the installed backends' tools for any MCP client (the ``mcp``
package; stdio and streamable HTTP).

- ``tools/list``: every tool the session workers offer (``Sandbox.warmup``), named
  ``<backend>_<action>`` (``bash_run``), with the backend's description and JSON schema plus an
  optional ``sandbox_id``.
- ``tools/call``: runs on a durable session of the tool's backend in one sandbox: the one the
  call names with ``sandbox_id``, else the one of the MCP client's session (the stdio connection,
  or the streamable HTTP ``Mcp-Session-Id``), else a new one. Every result names its
  ``sandbox_id``, so a client (or another client) can come back to the same shell.
- resources: ``sandbox://{sandbox_id}/{resource_type}/describe`` (the session's view) and
  ``sandbox://{sandbox_id}/{resource_type}/events`` (the newest entries of its event log).

The server holds no session state of its own: sessions are Temporal workflows, so a restarted
server (or a second one) serves the same sandboxes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from contract.extras import missing_extra

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
    from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent
    from mcp_types import Tool as MCPTool
except ModuleNotFoundError as exc:  # the [mcp] extra
    raise (missing_extra(exc, "integrations.mcp_server") or exc) from None

from backends.jail_policy import MCP, JailCeiling, JailPolicyError
from client import Sandbox
from client.catalog import SESSION_TOOL_TYPES, session_tools
from client.errors import PermissionDenied
from contract import ErrorCode, ToolSpec
from contract.limits import ID_PATTERN
from integrations.calls import ToolCall, aliases, model_answer
from integrations.gateway import SessionGateway
from integrations.mcp_http import HttpOptions, serve_http

SANDBOX_PARAM = "sandbox_id"
_SANDBOX_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": ID_PATTERN.pattern,
    "description": "The sandbox whose session runs the call (default: this MCP session's). "
    "Name the sandbox_id of an earlier result to use the same shell from another connection.",
}
INSTRUCTIONS = (
    "Tools run in durable sessions: a shell keeps its working directory and variables between "
    "calls, and across restarts, for as long as the session lives. Every result names its "
    "sandbox_id; pass it back to reach the same session from another connection."
)


class SessionsMCPServer(MCPServer[Any]):
    """An MCP server whose tools run on durable sessions.

    Args:
        gateway: How the sessions are reached.
        resource_types: Backends whose tools to offer (None: all the workers offer).
        default_sandbox: The sandbox of calls that name none and come with no MCP session id
            (stdio: the one client of this process); None: a new sandbox per such call.
        configs: Session config per resource type, used when a call opens the session.
        user_id: The owner named on every request.
        allow: What the sessions' configs may ask of their sandbox above the defaults (default:
            nothing; isolation "none" never). A config past it is refused here (ValueError at
            construction, 4012 for a call), before any session starts.
    """

    def __init__(
        self,
        gateway: SessionGateway,
        *,
        resource_types: list[str] | None = None,
        default_sandbox: str | None = None,
        configs: Mapping[str, Mapping[str, Any]] | None = None,
        user_id: str | None = None,
        allow: JailCeiling | None = None,
    ) -> None:
        super().__init__("durable-sessions", instructions=INSTRUCTIONS)
        self.allow = allow if allow is not None else JailCeiling()
        self.gateway = gateway
        self.resource_types = resource_types
        self.default_sandbox = default_sandbox
        self.configs = {k: dict(v) for k, v in (configs or {}).items()}
        for resource_type, config in self.configs.items():
            try:
                self.allow.check(config, MCP)
            except JailPolicyError as exc:
                raise ValueError(f"configs[{resource_type!r}]: {exc.message}") from None
        self.user_id = user_id
        self._by_alias: dict[str, ToolSpec] | None = None
        self.resource(
            "sandbox://{sandbox_id}/{resource_type}/describe",
            name="session",
            description="A session's view: state, instance, deadline, calls",
            mime_type="application/json",
        )(self._describe)
        self.resource(
            "sandbox://{sandbox_id}/{resource_type}/events",
            name="session events",
            description="The newest entries of a session's event log",
            mime_type="application/json",
        )(self._events)

    # --- tools -----------------------------------------------------------------------------------

    async def _specs(self) -> dict[str, ToolSpec]:
        if self._by_alias is None:
            self._by_alias = aliases(await self.gateway.tools(self.resource_types))
        return self._by_alias

    async def list_tools(self) -> list[MCPTool]:
        specs = dict(await self._specs())
        specs.update(aliases(await self._session_specs(set(s.name for s in specs.values()))))
        return [
            MCPTool(
                name=alias,
                description=spec.description or spec.name,
                input_schema=_with_sandbox(spec.params_schema),
            )
            for alias, spec in specs.items()
        ]

    async def _session_specs(self, known: set[str]) -> list[ToolSpec]:
        """The tools this server's own sandbox's sessions offer of their own (an mcp session's
        servers' ``mcp:<server>.<tool>``, as ``mcp_<server>.<tool>``): listed when a default
        sandbox (stdio) has such a session; any sandbox's are called by name."""
        offered = self.resource_types
        types = [t for t in SESSION_TOOL_TYPES if offered is None or t in offered]
        if self.default_sandbox is None or not types:
            return []
        sandbox = await self.gateway.sandbox(self.default_sandbox, self.user_id)
        return await session_tools(sandbox.describe_session, sandbox.execute, known)

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        spec = (self._by_alias or {}).get(name)
        return _with_sandbox(spec.params_schema) if spec is not None else None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult:
        spec = (await self._specs()).get(name) or _session_tool(name)
        if spec is None:
            raise ToolError(f"unknown tool {name!r}")
        params = dict(arguments)
        sandbox_id = params.pop(SANDBOX_PARAM, None) or self._sandbox_of(context)
        if not isinstance(sandbox_id, str) or not ID_PATTERN.match(sandbox_id):
            raise ToolError(f"sandbox_id must match {ID_PATTERN.pattern}")
        config = self.configs.get(spec.resource_type, {})
        try:
            self.allow.check(config, MCP)
        except JailPolicyError as exc:  # before any session starts
            refused = {"code": int(ErrorCode.PERMISSION_DENIED), "message": exc.message}
            text = TextContent(type="text", text=json.dumps(refused))
            return CallToolResult(content=[text], structured_content=refused, is_error=True)
        call = ToolCall(
            sandbox_id=sandbox_id,
            tool=spec.name,
            params=params,
            config=config,
            user_id=self.user_id,
        )
        envelope = await self.gateway.execute(call, f"mcp-{uuid.uuid4().hex}")
        answer = {**model_answer(envelope), SANDBOX_PARAM: sandbox_id}
        content: list[ContentBlock] = [
            TextContent(type="text", text=json.dumps(answer, default=str))
        ]
        if isinstance(envelope.data, dict) and isinstance(envelope.data.get("png_base64"), str):
            content.append(
                ImageContent(type="image", data=envelope.data["png_base64"], mime_type="image/png")
            )
        return CallToolResult(
            content=content, structured_content=answer, is_error=envelope.code != 0
        )

    def _sandbox_of(self, context: Context[Any, Any] | None) -> str:
        """The sandbox of the MCP client's session: its streamable HTTP session id, else this
        server's default (stdio), else a new one."""
        headers = context.headers if context is not None else None
        session = (headers or {}).get("mcp-session-id")
        if session:
            return "mcp-" + hashlib.sha256(session.encode()).hexdigest()[:24]
        return self.default_sandbox or f"mcp-{uuid.uuid4().hex[:16]}"

    # --- resources -------------------------------------------------------------------------------

    async def _readable(self, sandbox_id: str, resource_type: str) -> tuple[Sandbox, Any]:
        """The sandbox and the session's view, if this server may read the session: only when
        it may call it (the session's own rule), so without a user only sessions with no owner,
        the kind it makes. client.Sandbox alone would show a caller with no user every one."""
        sandbox = await self.gateway.sandbox(_checked(sandbox_id), self.user_id)
        try:
            view = await sandbox.describe_session(resource_type)
        except PermissionDenied as exc:  # another user's, seen by client.Sandbox
            raise ResourceError(exc.message) from None
        if view is None:
            raise ResourceNotFoundError(f"no {resource_type} session in sandbox {sandbox_id}")
        owner = view.get("user_id")
        if owner is not None and owner != self.user_id:
            who = f"user {self.user_id!r}" if self.user_id else "a request that names no user"
            raise ResourceError(
                f"permission denied: {who} does not own session {view.get('workflow_id')}"
            )
        return sandbox, view

    async def _describe(self, sandbox_id: str, resource_type: str) -> str:
        _, view = await self._readable(sandbox_id, resource_type)
        return json.dumps(view, default=str)

    async def _events(self, sandbox_id: str, resource_type: str) -> str:
        sandbox, _ = await self._readable(sandbox_id, resource_type)
        try:
            page = await sandbox.get_events(resource_type, reverse=True, limit=50)
        except Exception as exc:
            raise ResourceNotFoundError(
                f"no {resource_type} session in sandbox {sandbox_id}"
            ) from exc
        return json.dumps(page, default=str)


def _session_tool(name: str) -> ToolSpec | None:
    """A session's own tool by its alias (``mcp_memory.read_graph``) or full name
    (``mcp:memory.read_graph``): the session checks that it has it."""
    for resource_type in SESSION_TOOL_TYPES:
        for prefix in (f"{resource_type}_", f"{resource_type}:"):
            rest = name.removeprefix(prefix)
            if rest != name and "." in rest:
                return ToolSpec(name=f"{resource_type}:{rest}", resource_type=resource_type)
    return None


def _checked(sandbox_id: str) -> str:
    if not ID_PATTERN.match(sandbox_id):
        raise ResourceNotFoundError(f"not a sandbox id: {sandbox_id!r}")
    return sandbox_id


def _with_sandbox(schema: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(schema) if schema else {"type": "object", "properties": {}}
    out["properties"] = {**(out.get("properties") or {}), SANDBOX_PARAM: _SANDBOX_SCHEMA}
    return out


async def serve(
    server: SessionsMCPServer, *, transport: str = "stdio", http: HttpOptions | None = None
) -> None:
    """Serve over stdio or streamable HTTP (guarded: integrations/mcp_http.py) until stopped."""
    if transport == "stdio":
        await server.run_stdio_async()
    else:
        await serve_http(server, http or HttpOptions())
