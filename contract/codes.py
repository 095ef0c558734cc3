"""Result codes of the envelope: the one table every part of the product uses."""

from enum import IntEnum


class ErrorCode(IntEnum):
    """Envelope codes. 0 is success, 4xxx the caller's fault, 5xxx the system's.

    The 4000/5000 families follow AgentFlow's; codes it lacks and the durable design needs
    (permission, quota, closed session, lost resource) fill its gaps.
    """

    SUCCESS = 0
    INVALID_INPUT = 4000  # malformed request or unknown parameter
    PERMISSION_DENIED = 4001  # the caller's user does not own the session
    UNKNOWN_TOOL = 4002  # unknown or ambiguous tool name
    MISSING_FIELD = 4003  # a required parameter is missing
    WRONG_TYPE = 4004  # a parameter has the wrong type
    QUOTA_EXCEEDED = 4005  # the user's session limit is reached
    NO_SESSION = 4007  # no such session / instance, or not initialized
    NOT_FOUND = 4008  # no such checkpoint
    TOO_LARGE = 4009  # a checkpoint or log entry over its size limit
    SESSION_CLOSED = 4010  # the session is closing, closed or expired
    TOOL_ERROR = 5000  # the tool raised
    TIMEOUT = 5006  # the tool ran past its timeout and was stopped
    NOT_WARM = 5011  # the backend is not warm and cannot warm
    INITIALIZE_FAILED = 5012  # the backend could not create an instance
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
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.UNKNOWN_TOOL: "unknown tool",
    ErrorCode.MISSING_FIELD: "missing required field",
    ErrorCode.WRONG_TYPE: "wrong parameter type",
    ErrorCode.QUOTA_EXCEEDED: "quota exceeded",
    ErrorCode.NO_SESSION: "no such session",
    ErrorCode.NOT_FOUND: "not found",
    ErrorCode.TOO_LARGE: "too large",
    ErrorCode.SESSION_CLOSED: "session is closed",
    ErrorCode.TOOL_ERROR: "tool raised an error",
    ErrorCode.TIMEOUT: "timed out",
    ErrorCode.NOT_WARM: "backend is not warm and cannot warm",
    ErrorCode.INITIALIZE_FAILED: "backend could not initialize a session",
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.RESOURCE_LOST: "resource lost, re-initialized",
    ErrorCode.UNAVAILABLE: "no worker is available",
}
