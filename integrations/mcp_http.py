"""The MCP server over streamable HTTP, guarded: anyone who reaches it can run commands in
sessions, so

- beyond loopback it needs a bearer token (``--token`` or ``$DURABLE_SESSIONS_MCP_TOKEN``) and
  refuses to start without one; with a token, every request must send
  ``Authorization: Bearer <token>`` (401 otherwise);
- DNS-rebinding protection stays on at every address (the ``mcp`` package's
  ``TransportSecuritySettings``): the ``Host`` header must name this server (loopback names, the
  bound address, this machine's names for a wildcard bind, or ``--allowed-host``), else 421; an
  ``Origin``, when sent, must be one of those, else 403;
- a body over the limit answers 413 with a message (read to its end first, so the client gets
  the answer rather than a connection reset).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contract.extras import missing_extra

try:
    from mcp.server.transport_security import TransportSecuritySettings
except ModuleNotFoundError as exc:  # the [mcp] extra
    raise (missing_extra(exc, "integrations.mcp_http") or exc) from None

from runtime.body_limit import App, BodyLimit, Receive, Scope, Send

TOKEN_ENV = "DURABLE_SESSIONS_MCP_TOKEN"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_WILDCARD = ("0.0.0.0", "::", "")


@dataclass
class HttpOptions:
    """Where the MCP server listens and who it answers."""

    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/mcp"
    token: str | None = field(default_factory=lambda: os.environ.get(TOKEN_ENV) or None)
    allowed_hosts: Sequence[str] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(options: HttpOptions) -> str | None:
    """Why the server must not start with ``options``, or None."""
    if options.token or is_loopback(options.host):
        return None
    return (
        f"the MCP server would listen on {options.host} with no authentication: anyone who "
        f"reaches it could run commands. Set {TOKEN_ENV} (or pass --token) to a secret that "
        "clients send as 'Authorization: Bearer <token>', or listen on 127.0.0.1"
    )


def security(options: HttpOptions) -> TransportSecuritySettings:
    """DNS-rebinding protection for the names this server answers to."""
    port = options.port or "*"  # port 0: the one the system picks, unknown here
    names = ["127.0.0.1", "localhost", "[::1]"]
    if options.host in _WILDCARD:  # reached by this machine's own names and addresses
        names += _own_names()
    else:
        names.append(f"[{options.host}]" if ":" in options.host else options.host)
    hosts: list[str] = []
    for name in names:
        hosts += [f"{name}:{port}", name] if port == 80 else [f"{name}:{port}"]
    for extra in options.allowed_hosts:  # as given (with its port), and with this server's
        hosts += [extra] if _has_port(extra) else [extra, f"{extra}:{port}"]
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    # Local pages (an MCP inspector on another port) may call a server on this machine.
    origins += ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def _has_port(host: str) -> bool:
    return host.rsplit("]", 1)[-1].count(":") == 1


def _own_names() -> list[str]:
    names = [socket.gethostname(), socket.getfqdn()]
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            address = str(info[4][0])
            names.append(f"[{address}]" if ":" in address else address)
    except OSError:
        pass  # no resolvable name: loopback and --allowed-host still work
    return [n for n in dict.fromkeys(names) if n]


def _rpc_error(message: str) -> bytes:
    """A JSON-RPC error with no id: what an MCP client can show."""
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    return json.dumps(error).encode()


def too_large(limit: int) -> bytes:
    return _rpc_error(
        f"request body too large: over the limit of {limit} bytes "
        "(durable-sessions mcp --max-body-bytes)"
    )


class BearerToken:
    """Answers 401 unless a request sends ``Authorization: Bearer <token>``."""

    def __init__(self, app: App, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(sent, self.expected):
            await self.app(scope, receive, send)
            return
        body = _rpc_error(
            "a valid token is required: send 'Authorization: Bearer <token>' (the server's "
            f"--token or ${TOKEN_ENV})"
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="durable-sessions-mcp"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def http_app(server: Any, options: HttpOptions) -> App:
    """The streamable HTTP app of an MCPServer, with the guards above (the body limit outermost,
    so a refused request's body is still read before its answer)."""
    app: App = server.streamable_http_app(
        streamable_http_path=options.path,
        max_request_body_size=options.max_body_bytes,
        transport_security=security(options),
        host=options.host,
    )
    if options.token:
        app = BearerToken(app, options.token)
    return BodyLimit(app, options.max_body_bytes, too_large)


async def serve_http(server: Any, options: HttpOptions) -> None:
    """Serve until stopped; ValueError (before listening) when ``refusal`` says so."""
    import uvicorn

    problem = refusal(options)
    if problem is not None:
        raise ValueError(problem)
    config = uvicorn.Config(
        http_app(server, options),
        host=options.host,
        port=options.port,
        log_level=server.settings.log_level.lower(),
    )
    await uvicorn.Server(config).serve()
