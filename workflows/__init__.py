"""Workflows: deterministic code only; they import the contract and nothing else of ours."""

from workflows.session import SessionWorkflow
from workflows.shared_tools import SharedToolsWorkflow
from workflows.warmup import WarmupWorkflow

__all__ = ["SessionWorkflow", "SharedToolsWorkflow", "WarmupWorkflow"]
