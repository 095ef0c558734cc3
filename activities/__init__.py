"""Activities: a backend's lifecycle and tool calls, run on workers."""

from activities.instances import InstanceRegistry, LiveInstance
from activities.session_activities import SessionActivities

__all__ = ["InstanceRegistry", "LiveInstance", "SessionActivities"]
