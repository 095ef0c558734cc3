"""Names every part agrees on: workflow ids, the task queue and the search attributes."""

from temporalio.common import SearchAttributeKey

DEFAULT_TASK_QUEUE = "durable-sessions"
#: The Nexus endpoint the embedded server registers for the sessions' Nexus service.
NEXUS_ENDPOINT = "durable-sessions"

SandboxIdAttr = SearchAttributeKey.for_keyword("SandboxId")
ResourceTypeAttr = SearchAttributeKey.for_keyword("ResourceType")
SessionStateAttr = SearchAttributeKey.for_keyword("SessionState")
UserIdAttr = SearchAttributeKey.for_keyword("SessionUserId")
AgentIdAttr = SearchAttributeKey.for_keyword("SessionAgentId")
#: When the session expires unless a call or refresh moves it (kept within a minute).
DeadlineAttr = SearchAttributeKey.for_datetime("SessionDeadline")
SessionNameAttr = SearchAttributeKey.for_keyword("SessionName")
#: "session", "temporary" (one call) or "record" (no resource): lets operators filter.
SessionKindAttr = SearchAttributeKey.for_keyword("SessionKind")
#: The workflow id of the session a forked session was forked from.
ParentSessionAttr = SearchAttributeKey.for_keyword("ParentSession")

#: Every custom search attribute a session sets; a server must have them all registered.
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    SandboxIdAttr,
    ResourceTypeAttr,
    SessionStateAttr,
    UserIdAttr,
    AgentIdAttr,
    DeadlineAttr,
    SessionNameAttr,
    SessionKindAttr,
    ParentSessionAttr,
)


def session_workflow_id(sandbox_id: str, resource_type: str) -> str:
    """The workflow id of a sandbox's session for one resource type; any process can derive it."""
    return f"{sandbox_id}:{resource_type}"


def shared_tools_workflow_id(sandbox_id: str) -> str:
    """The workflow id that serves a sandbox's shared tools."""
    return f"{sandbox_id}:shared"


def temporary_workflow_id(sandbox_id: str, resource_type: str, request_id: str) -> str:
    """The workflow id of a one-call temporary session; one per request, so never shared."""
    return f"{sandbox_id}:{resource_type}:tmp-{request_id}"


def split_tool_name(tool: str) -> tuple[str, str]:
    """Split ``"bash:run"`` into ``("bash", "run")``; raise ValueError for a malformed name."""
    resource, sep, action = tool.partition(":")
    if not sep or not resource or not action:
        raise ValueError(f"tool name {tool!r} is not of the form '<resource>:<action>'")
    return resource, action
