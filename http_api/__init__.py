"""The HTTP API: AgentFlow's protocol over the durable sessions, with per-user API keys.

``durable-sessions http`` serves it (``./run.sh`` starts it beside the worker). Every route runs
on ``client.Sandbox``, so a session made over HTTP is the same workflow the Python client, the
``temporal`` CLI and the UI see.
"""

from http_api.app import create_app
from http_api.keys import ApiKey, KeyStore, new_key
from http_api.server import HttpSettings, serve_http

__all__ = ["ApiKey", "HttpSettings", "KeyStore", "create_app", "new_key", "serve_http"]
