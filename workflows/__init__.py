"""Workflows: deterministic code only."""

from workflows.session import SessionWorkflow
from workflows.warmup import WarmupWorkflow

__all__ = ["SessionWorkflow", "WarmupWorkflow"]
