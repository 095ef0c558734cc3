"""The backends of one worker process: loading, warming once, and calling tools safely."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from backends.base import Backend, ToolBinding, scan_tools
from contract import ErrorCode, ToolOutcome, ToolSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "durable_sessions.backends"
#: The backends this project ships (its own entry points). `./run.sh` offers only these unless
#: told otherwise, so a backend installed for tests or by another package is never offered there.
BUILTIN_BACKENDS: tuple[str, ...] = ("bash", "code", "mcp", "rag", "vm")


class ToolCallError(Exception):
    """A tool call rejected or failed with an envelope code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_failure(self) -> ApplicationError:
        """The activity failure carrying this code; the same call would fail again: no retry."""
        return ApplicationError(self.message, type=str(int(self.code)), non_retryable=True)


def registered_backends() -> set[str]:
    """Names of every backend installed under the entry point group, loaded or not."""
    return set(entry_points(group=ENTRY_POINT_GROUP).names)


def load_backends(names: Iterable[str] | None = None) -> list[Backend]:
    """Instantiate the backends registered under the entry point group (all, or those named).

    Raises:
        LookupError: a named backend is not registered (not installed).
    """
    wanted = set(names) if names is not None else None
    missing = sorted((wanted or set()) - registered_backends())
    if missing:
        raise LookupError(
            f"no backend registered as {', '.join(missing)} "
            f"(installed: {', '.join(sorted(registered_backends())) or 'none'})"
        )
    backends: list[Backend] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        cls = ep.load()
        backends.append(cls())
    return backends


def validation_error(exc: ValidationError) -> ToolCallError:
    """Map a pydantic error on tool parameters to the envelope code a caller expects."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "params"
    if first["type"] == "missing":
        return ToolCallError(ErrorCode.MISSING_FIELD, f"missing required parameter '{where}'")
    if first["type"] == "extra_forbidden":
        return ToolCallError(ErrorCode.INVALID_INPUT, f"unknown parameter '{where}'")
    return ToolCallError(ErrorCode.WRONG_TYPE, f"parameter '{where}': {first['msg']}")


class BackendHost:
    """Holds a worker's backends, warms each once, and runs tool calls into envelopes."""

    def __init__(self, backends: Iterable[Backend]) -> None:
        self.backends: dict[str, Backend] = {b.name: b for b in backends}
        self.tools: dict[str, ToolBinding] = {}
        for backend in self.backends.values():
            self.tools.update(scan_tools(backend))
        self._warm: set[str] = set()
        # One lock per backend: warming one never waits for another.
        self._warm_locks = {name: asyncio.Lock() for name in self.backends}

    def specs(self, resource_type: str | None = None) -> list[ToolSpec]:
        return [
            b.spec
            for b in self.tools.values()
            if resource_type is None or b.spec.resource_type == resource_type
        ]

    def backend(self, resource_type: str) -> Backend:
        try:
            return self.backends[resource_type]
        except KeyError:
            known = ", ".join(sorted(self.backends)) or "none"
            raise ToolCallError(
                ErrorCode.UNKNOWN_TOOL,
                f"unknown resource type {resource_type!r} (this worker has: {known})",
            ) from None

    def is_warm(self, resource_type: str) -> bool:
        return resource_type in self._warm

    async def ensure_warm(self, resource_type: str) -> Backend:
        """Warm a backend once per process; concurrent callers wait for the one warmup."""
        backend = self.backend(resource_type)
        if resource_type in self._warm:
            return backend
        async with self._warm_locks[resource_type]:
            if resource_type not in self._warm:
                try:
                    await backend.warmup()
                except Exception as exc:
                    raise ToolCallError(
                        ErrorCode.NOT_WARM, f"backend {resource_type!r} failed to warm up: {exc}"
                    ) from exc
                self._warm.add(resource_type)
        return backend

    def binding(self, tool_name: str) -> ToolBinding:
        try:
            return self.tools[tool_name]
        except KeyError:
            raise ToolCallError(ErrorCode.UNKNOWN_TOOL, f"unknown tool {tool_name!r}") from None

    def validate(
        self, tool_name: str, params: dict[str, Any], *, strict: bool = False
    ) -> dict[str, Any]:
        """Check parameters against the tool's signature before anything runs."""
        return self.arguments(tool_name, params, strict=strict)[0]

    def arguments(
        self, tool_name: str, params: dict[str, Any], *, strict: bool = False
    ) -> tuple[dict[str, Any], list[str]]:
        """The tool's arguments from ``params``, and the names it does not declare. Those are
        dropped (AgentFlow's tools take ``**kwargs``: a task's extra kwargs reach every call),
        or answer 4000 when ``strict``; a tool that takes ``**kwargs`` itself gets them."""
        binding = self.binding(tool_name)
        model_cls = binding.params_model
        takes_any = model_cls.model_config.get("extra") == "allow"
        ignored = [] if takes_any else [n for n in params if n not in model_cls.model_fields]
        if ignored and not strict:
            params = {k: v for k, v in params.items() if k in model_cls.model_fields}
        try:
            model = model_cls.model_validate(params)
        except ValidationError as exc:
            raise validation_error(exc) from None
        args = {name: getattr(model, name) for name in model_cls.model_fields}
        args.update(model.model_extra or {})
        return args, ignored

    def instance_tool(
        self, tool_name: str, session_info: dict[str, Any] | None
    ) -> tuple[Backend, ToolSpec] | None:
        """The backend and spec of a tool the instance offers itself (``Backend.instance_tools``);
        None for a backend's ``@tool`` method or a name nothing offers."""
        if tool_name in self.tools or session_info is None:
            return None
        backend = self.backends.get(tool_name.partition(":")[0])
        if backend is None:
            return None
        spec = next((s for s in backend.instance_tools(session_info) if s.name == tool_name), None)
        return (backend, spec) if spec is not None else None

    async def invoke(
        self,
        tool_name: str,
        params: dict[str, Any],
        session_info: dict[str, Any] | None,
        *,
        strict: bool = False,
    ) -> ToolOutcome:
        """Validate, warm if needed, run the tool; every failure becomes an outcome, not a raise.
        Undeclared parameters are dropped and named in ``ignored_params`` (4000 when
        ``strict``)."""
        started = time.perf_counter()
        ignored: list[str] = []
        try:
            found = self.instance_tool(tool_name, session_info)
            if found is not None:  # an instance's own tool (an mcp session's server's)
                backend, spec = found
                args, ignored = instance_arguments(spec, params, strict=strict)
                await self.ensure_warm(backend.name)
                result = await backend.call_instance_tool(tool_name, args, session_info or {})
            else:
                binding = self.binding(tool_name)
                args, ignored = self.arguments(tool_name, params, strict=strict)
                await self.ensure_warm(binding.spec.resource_type)
                if binding.wants_session:
                    result = await binding.method(**args, session_info=session_info or {})
                else:
                    result = await binding.method(**args)
        except ToolCallError as exc:
            return _outcome(exc.code, exc.message, None, started, ignored)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("tool %s raised", tool_name, exc_info=True)
            data = {"error_type": type(exc).__name__, "error": str(exc)}
            message = f"{type(exc).__name__}: {exc}"
            return _outcome(ErrorCode.TOOL_ERROR, message, data, started, ignored)
        if isinstance(result, ToolOutcome):
            result.execution_time_ms = _elapsed_ms(started)
            result.ignored_params = ignored
            return result
        return _outcome(ErrorCode.SUCCESS, "success", result, started, ignored)

    async def shutdown(self) -> None:
        """Run every backend's shutdown hook; one failing does not stop the others."""
        for backend in self.backends.values():
            try:
                await backend.shutdown()
            except Exception:
                log.exception("backend %s failed to shut down", backend.name)


def instance_arguments(
    spec: ToolSpec, params: dict[str, Any], *, strict: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """An instance tool's arguments and the names it does not declare, by its JSON schema's
    ``properties``: undeclared ones are dropped (4000 when ``strict``) unless the schema says
    it takes more (``additionalProperties``: true or a schema). Types are checked by the tool
    itself (an MCP server checks its own)."""
    schema = spec.params_schema
    properties = schema.get("properties") or {}
    if schema.get("additionalProperties", False) not in (False, None):
        return dict(params), []
    ignored = [name for name in params if name not in properties]
    if ignored and strict:
        known = ", ".join(properties) or "none"
        raise ToolCallError(
            ErrorCode.INVALID_INPUT,
            f"{spec.name}: unknown parameter {ignored[0]!r} (takes: {known})",
        )
    return {k: v for k, v in params.items() if k in properties}, ignored


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _outcome(
    code: ErrorCode, message: str, data: Any, started: float, ignored: list[str] | None = None
) -> ToolOutcome:
    return ToolOutcome(
        code=code,
        message=message,
        data=data,
        execution_time_ms=_elapsed_ms(started),
        ignored_params=ignored or [],
    )
