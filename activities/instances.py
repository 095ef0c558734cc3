"""The worker-local registry of live resource instances."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends import Backend


@dataclass
class LiveInstance:
    session_id: str
    sandbox_id: str
    backend: Backend
    session_info: dict[str, Any] = field(default_factory=dict)
    workflow_id: str = ""


class InstanceRegistry:
    """Instances held by this process, by session id. Plain dict: one event loop owns it."""

    def __init__(self) -> None:
        self._live: dict[str, LiveInstance] = {}

    def add(self, instance: LiveInstance) -> None:
        self._live[instance.session_id] = instance

    def get(self, session_id: str) -> LiveInstance | None:
        return self._live.get(session_id)

    def pop(self, session_id: str) -> LiveInstance | None:
        return self._live.pop(session_id, None)

    def count(self, resource_type: str) -> int:
        return sum(1 for i in self._live.values() if i.backend.name == resource_type)

    def drain(self) -> list[LiveInstance]:
        live, self._live = list(self._live.values()), {}
        return live
