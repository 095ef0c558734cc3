"""Sessions for other callers, built on the client: agent workflows (session activities and tool
adapters for the OpenAI Agents SDK and pydantic-ai), other namespaces (a Nexus service) and any
MCP client (an MCP server).

Nothing is imported here: ``integrations.calls`` and the tool adapters are loaded by workflow
code, the rest by workers and entry points.
"""
