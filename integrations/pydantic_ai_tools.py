"""A session's tools for pydantic-ai agents made durable with Temporal (``TemporalDurability``).

    toolset = SessionToolset(["bash"])
    agent = Agent(model, name="shell", toolsets=[toolset], capabilities=[TemporalDurability()])

``SessionToolset`` does its I/O through the session activities
(``integrations.activities.SessionToolActivities``, registered on the agent's worker): listing
the tools is one activity per workflow run, and every call is the ``execute`` activity, so the
toolset runs in workflow code as it is (pydantic-ai leaves a custom toolset unwrapped) and each
call is durable and answered once. The model sees ``bash_run`` for ``bash:run``, with the
backend's description and JSON schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract.extras import missing_extra

try:
    from pydantic_ai.tools import RunContext, ToolDefinition
    from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
except ModuleNotFoundError as exc:  # the [agents] extra
    raise (missing_extra(exc, "integrations.pydantic_ai_tools") or exc) from None
from pydantic_core import SchemaValidator, core_schema
from temporalio import workflow

from contract import ToolSpec
from integrations import calls
from integrations.calls import SessionOptions

# The session validates parameters against the backend's own model (answers 4000/4003/4004).
_ANY_ARGS = SchemaValidator(
    core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
)


class SessionToolset(AbstractToolset[Any]):
    """The tools of some backends, called on the workflow's sandbox sessions.

    Args:
        resource_types: Backends whose tools to offer (None: every installed backend's).
        options: Which sandbox, configs, timeouts and retries the calls use.
        only: Tool names (``"bash:run"``) to keep; default all of the backends' tools.
        id: The toolset's id among the agent's toolsets.
        max_retries: How often the model may retry a call it got wrong.
    """

    def __init__(
        self,
        resource_types: Sequence[str] | None = ("bash",),
        *,
        options: SessionOptions | None = None,
        only: Sequence[str] | None = None,
        id: str = "durable-sessions",
        max_retries: int = 1,
    ) -> None:
        self.resource_types = list(resource_types) if resource_types is not None else None
        self.options = options or SessionOptions()
        self.only = set(only) if only is not None else None
        self._id = id
        self.max_retries = max_retries
        #: Specs per workflow run: one toolset may serve many runs on a worker.
        self._specs: dict[str, dict[str, ToolSpec]] = {}

    @property
    def id(self) -> str:
        return self._id

    async def _tool_specs(self) -> dict[str, ToolSpec]:
        if not workflow.in_workflow():
            raise RuntimeError(
                "SessionToolset runs in a Temporal workflow (its calls are activities)"
            )
        run_id = workflow.info().run_id
        if run_id not in self._specs:
            specs = await calls.list_tools(self.resource_types, self.options)
            kept = [s for s in specs if self.only is None or s.name in self.only]
            self._specs[run_id] = calls.aliases(kept)
        return self._specs[run_id]

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        return {
            alias: ToolsetTool(
                toolset=self,
                tool_def=ToolDefinition(
                    name=alias,
                    description=spec.description or spec.name,
                    parameters_json_schema=spec.params_schema
                    or {"type": "object", "properties": {}},
                ),
                max_retries=self.max_retries,
                args_validator=_ANY_ARGS,
            )
            for alias, spec in (await self._tool_specs()).items()
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> dict[str, Any]:
        spec = (await self._tool_specs())[name]
        envelope = await calls.execute(spec.name, tool_args, self.options)
        return calls.model_answer(envelope)

    async def __aexit__(self, *args: Any) -> bool | None:
        if workflow.in_workflow():
            self._specs.pop(workflow.info().run_id, None)
        return None
