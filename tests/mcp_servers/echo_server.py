"""A small stdio MCP server of the tests' own (MCPServer, mcp 2.x's FastMCP): it echoes, adds,
and keeps a counter in a file of its working directory (the session's workspace)."""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
def echo(text: str) -> str:
    """Answer the text back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """The sum of a and b."""
    return a + b


@server.tool()
def bump(name: str = "counter.txt") -> int:
    """Add one to the number in a file of the working directory; answer the new number."""
    path = Path(name)
    value = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(value))
    return value


@server.tool()
def crash() -> str:
    """End the server at once (exit status 3), without an answer."""
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
