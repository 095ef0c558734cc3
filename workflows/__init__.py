"""Workflows: deterministic code only."""

from workflows.session import SessionWorkflow
from workflows.shared_tools import SharedToolsWorkflow
from workflows.warmup import WarmupWorkflow

__all__ = ["SessionWorkflow", "SharedToolsWorkflow", "WarmupWorkflow"]
