"""A session's tools for the OpenAI Agents SDK's Temporal integration.

In an agent workflow (the worker has ``OpenAIAgentsPlugin`` and the session activities,
``integrations.activities.SessionToolActivities``)::

    tools = await session_tools(["bash"])              # one activity: the tools and their schemas
    agent = Agent(name="shell", instructions="...", tools=tools)
    result = await Runner.run(agent, "...")

Each tool is a ``FunctionTool`` in the style of ``workflow.activity_as_tool``: the model sees the
backend's own name (``bash_run`` for ``bash:run``), description and JSON schema, and a call runs
the ``execute`` activity, so it is durable, retried safely, and answered once per call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from contract.extras import missing_extra

try:
    from agents import FunctionTool, RunContextWrapper, Tool
except ModuleNotFoundError as exc:  # the [agents] extra
    raise (missing_extra(exc, "integrations.openai_tools") or exc) from None

from contract import ToolSpec
from integrations import calls
from integrations.calls import SessionOptions


async def session_tools(
    resource_types: Sequence[str] | None = ("bash",),
    *,
    options: SessionOptions | None = None,
    only: Sequence[str] | None = None,
) -> list[Tool]:
    """The tools of these backends as agent tools; from workflow code only.

    Args:
        resource_types: Backends whose tools to offer (None: every installed backend's).
        options: Which sandbox, configs, timeouts and retries the calls use.
        only: Tool names (``"bash:run"``) to keep; default all of the backends' tools.
    """
    options = options or SessionOptions()
    specs = await calls.list_tools(resource_types, options)
    if only is not None:
        specs = [s for s in specs if s.name in set(only)]
    calls.aliases(specs)  # refuse two tools under one name
    return [function_tool(spec, options) for spec in specs]


def function_tool(spec: ToolSpec, options: SessionOptions | None = None) -> FunctionTool:
    """One tool as an agent tool that runs the ``execute`` activity."""
    options = options or SessionOptions()

    async def invoke(_ctx: RunContextWrapper[Any], arguments: str) -> str:
        params = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(params, dict):
            raise ValueError(f"{spec.name} takes a JSON object, got {arguments[:200]!r}")
        envelope = await calls.execute(spec.name, params, options)
        return json.dumps(calls.model_answer(envelope), default=str)

    return FunctionTool(
        name=calls.tool_alias(spec.name),
        description=spec.description or spec.name,
        params_json_schema=spec.params_schema or {"type": "object", "properties": {}},
        on_invoke_tool=invoke,
        # The backends' schemas allow defaults and optional fields, which strict mode forbids.
        strict_json_schema=False,
    )
