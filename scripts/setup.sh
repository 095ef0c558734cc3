#!/usr/bin/env bash
# Create .venv and install the project with its test tools; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml tests/plugin_pkg/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  # The test suite's third-party backend, installed as any plugin would be.
  .venv/bin/python -m pip install -q -e tests/plugin_pkg
  rm -f .venv/.installed-* && touch "$stamp"
fi
