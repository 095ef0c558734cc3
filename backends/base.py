"""The backend plugin API: a base class with lifecycle hooks and the ``@tool`` decorator."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model

from contract import ToolSpec, split_tool_name

_TOOL_ATTR = "__session_tool_name__"
#: Keyword-only parameters the host supplies; they are not tool parameters.
_INJECTED = frozenset({"session_info"})
_SKIPPED = frozenset({"self", "cls"})


def tool(
    name: str, *, description: str | None = None, idempotent: bool = False
) -> Callable[[Any], Any]:
    """Mark a backend method as the tool ``name`` (``"<resource>:<action>"``).

    ``"*:<action>"`` names a tool of a mixin that several backends share: each offers it under
    its own resource type (``bash:write_file``, ``code:write_file``).
    ``idempotent=True`` says the tool is safe to repeat: after its worker is lost mid-call, the
    call runs again on the new instance instead of answering "resource lost".
    """
    split_tool_name(name)

    def mark(fn: Any) -> Any:
        setattr(fn, _TOOL_ATTR, name)
        fn.__session_tool_idempotent__ = idempotent
        if description is not None:
            fn.__doc__ = description
        return fn

    return mark


class Backend:
    """Base class of every backend.

    ``name`` is the resource type and the prefix of its tools. A *session* backend (the default)
    gets a private instance per session from :meth:`initialize`; a *shared* backend
    (``shared = True``) is warmed once per worker and its tools need no session.
    """

    name: ClassVar[str] = ""
    shared: ClassVar[bool] = False
    #: Instances of a config kept started ahead of its next session (see
    #: ``activities/warm_pool.py``); 0: each session's instance starts with it.
    warm_instances: ClassVar[int] = 0

    async def warmup(self) -> None:
        """Load what every session of this backend shares (models, pools); once per process."""

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        """Create a private instance for one session; the result is its ``session_info``."""
        return {"config": config}

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        """Release one session's instance."""

    async def shutdown(self) -> None:
        """Release what :meth:`warmup` loaded; the worker is stopping."""

    async def snapshot(self, session_info: dict[str, Any]) -> dict[str, Any] | None:
        """JSON-safe state of an instance that :meth:`restore` can rebuild elsewhere, or None.

        Taken after every call; the workflow keeps the latest and hands it to a new instance
        when the worker holding the old one is lost or stops. None also means "unchanged since
        the last one": the workflow keeps the one it has, so a call that changed nothing sends
        nothing."""
        return None

    async def restore(self, session_info: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """Bring a freshly initialized instance to the state of a snapshot."""

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        """JSON-safe facts about an instance, shown in the session's view (never secrets)."""
        return {}

    def instance_tools(self, session_info: dict[str, Any]) -> list[ToolSpec]:
        """Tools this instance offers beside the backend's ``@tool`` methods, named
        ``"<resource>:<action>"`` (an ``mcp`` session's servers' tools). The session lists and
        checks them with the others; :meth:`call_instance_tool` runs them."""
        return []

    async def call_instance_tool(
        self, name: str, params: dict[str, Any], session_info: dict[str, Any]
    ) -> Any:
        """Run one of :meth:`instance_tools` with its parameters (undeclared ones already
        dropped); its answer is the envelope's data, as a ``@tool`` method's is."""
        raise NotImplementedError(f"{type(self).__name__} lists no instance tools")


@dataclass(frozen=True)
class ToolBinding:
    """A tool found on a backend: its spec, its parameter model and the bound method."""

    spec: ToolSpec
    params_model: type[BaseModel]
    method: Callable[..., Awaitable[Any]]
    wants_session: bool


def _params_model(name: str, fn: Callable[..., Any]) -> tuple[type[BaseModel], bool]:
    signature = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)  # resolves postponed annotations
    fields: dict[str, Any] = {}
    wants_session = False
    #: A tool that takes ``**kwargs`` (as AgentFlow's do) gets every undeclared parameter too.
    extra: Literal["allow", "forbid"] = "forbid"
    for param in signature.parameters.values():
        if param.name in _INJECTED:
            wants_session = True
            continue
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.name in _SKIPPED or param.kind is param.VAR_POSITIONAL:
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(
        f"Params[{name}]", __config__=ConfigDict(extra=extra, strict=True), **fields
    )
    return model, wants_session


def scan_tools(backend: Backend) -> dict[str, ToolBinding]:
    """Find every ``@tool`` method of a backend and build its spec from its signature."""
    found: dict[str, ToolBinding] = {}
    for attr in dir(type(backend)):
        fn = getattr(type(backend), attr, None)
        name = getattr(fn, _TOOL_ATTR, None)
        if name is None or fn is None:
            continue
        resource, action = split_tool_name(name)
        if resource == "*":
            resource, name = backend.name, f"{backend.name}:{action}"
        if resource != backend.name:
            raise ValueError(f"tool {name!r} does not belong to backend {backend.name!r}")
        model, wants_session = _params_model(name, fn)
        spec = ToolSpec(
            name=name,
            resource_type=backend.name,
            description=inspect.getdoc(fn) or "",
            shared=backend.shared,
            idempotent=getattr(fn, "__session_tool_idempotent__", False),
            params_schema=model.model_json_schema(),
        )
        found[name] = ToolBinding(spec, model, getattr(backend, attr), wants_session)
    return found
