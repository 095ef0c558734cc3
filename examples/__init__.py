"""Runnable examples: agent workflows that use durable sessions, and a Nexus caller.

Each runs against a running server and session worker (``./run.sh``), from the repository root:
``.venv/bin/python -m examples.<name>``.
"""
