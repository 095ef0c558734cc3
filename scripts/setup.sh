#!/usr/bin/env bash
# Create .venv and install the project with its test tools; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages the vm backend drives: a virtual X server, an input tool, a terminal to type into.
missing=()
for tool in Xvfb:xvfb xdotool:xdotool xterm:xterm; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo -n")
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && \
         $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi
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
