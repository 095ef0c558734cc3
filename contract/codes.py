"""Result codes of the envelope: the one table every surface uses (Python, HTTP, MCP, workflow
messages).

Where AgentFlow names the same situation its number is ours: a malformed request or unknown tool
(4002), a missing (4003) or wrongly typed (4004) parameter, no session or a resource that could
not be initialized (4007), a tool that raised (5005), a timeout (5006), failed and partly failed
batches (5009, 5010), a backend that is not warm (5011), an internal error (5013). What the durable
design adds takes numbers AgentFlow does not use (4008-4013, 5014, 5015). The table in
docs/contract.md puts AgentFlow's numbers beside ours.
"""

from enum import IntEnum


class ErrorCode(IntEnum):
    """Envelope codes. 0 is success, 4xxx the caller's fault, 5xxx the system's."""

    SUCCESS = 0
    INVALID_INPUT = 4000  # malformed request or unknown parameter
    UNKNOWN_TOOL = 4002  # unknown or ambiguous tool name (AgentFlow: INVALID_REQUEST_FORMAT)
    MISSING_FIELD = 4003  # a required parameter or field is missing
    WRONG_TYPE = 4004  # a parameter has the wrong type
    NO_SESSION = 4007  # no such session / instance, or its resource could not be initialized
    #: The backend could not create an instance: AgentFlow's RESOURCE_NOT_INITIALIZED, as 4007.
    INITIALIZE_FAILED = 4007
    NOT_FOUND = 4008  # no such checkpoint
    TOO_LARGE = 4009  # a request body, checkpoint or log entry over its size limit
    SESSION_CLOSED = 4010  # the session is closing, closed or expired
    UNAUTHENTICATED = 4011  # no valid API key (HTTP)
    PERMISSION_DENIED = 4012  # the caller's user does not own the session
    QUOTA_EXCEEDED = 4013  # a limit is reached: sessions, checkpoints, request rate
    TOOL_ERROR = 5005  # the tool raised (AgentFlow: UNEXPECTED_ERROR)
    TIMEOUT = 5006  # the tool ran past its timeout and was stopped
    ALL_REQUESTS_FAILED = 5009  # every call of a batch failed
    PARTIAL_FAILURE = 5010  # some calls of a batch failed
    NOT_WARM = 5011  # the backend is not warm and cannot warm
    INTERNAL = 5013  # anything else that went wrong inside the system
    RESOURCE_LOST = 5014  # the worker holding the instance died; a new instance was made
    UNAVAILABLE = 5015  # no worker answered in time

    @property
    def message(self) -> str:
        """A default human message for the code."""
        return _MESSAGES[self]


_MESSAGES = {
    ErrorCode.SUCCESS: "success",
    ErrorCode.INVALID_INPUT: "invalid input",
    ErrorCode.UNKNOWN_TOOL: "unknown tool",
    ErrorCode.MISSING_FIELD: "missing required field",
    ErrorCode.WRONG_TYPE: "wrong parameter type",
    ErrorCode.NO_SESSION: "no such session, or its resource could not be initialized",
    ErrorCode.NOT_FOUND: "not found",
    ErrorCode.TOO_LARGE: "too large",
    ErrorCode.SESSION_CLOSED: "session is closed",
    ErrorCode.UNAUTHENTICATED: "no valid API key",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.QUOTA_EXCEEDED: "quota exceeded",
    ErrorCode.TOOL_ERROR: "tool raised an error",
    ErrorCode.TIMEOUT: "timed out",
    ErrorCode.ALL_REQUESTS_FAILED: "all requests failed",
    ErrorCode.PARTIAL_FAILURE: "partial failure",
    ErrorCode.NOT_WARM: "backend is not warm and cannot warm",
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.RESOURCE_LOST: "resource lost, re-initialized",
    ErrorCode.UNAVAILABLE: "no worker is available",
}
