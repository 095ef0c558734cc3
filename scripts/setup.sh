#!/usr/bin/env bash
# Create .venv and install the project with its dev tools; safe to run again.
#   bash scripts/setup.sh           the project (what ./run.sh needs)
#   bash scripts/setup.sh --tests   also the test suite's plugin backends (./test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
with_tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=1 ;;
    *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
  esac
done

# Debian packages: bubblewrap (every session's sandbox), and what the vm backend drives: a virtual
# X server, an input tool, a terminal to type into.
missing=()
for tool in bwrap:bubblewrap Xvfb:xvfb xdotool:xdotool xterm:xterm; do
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
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  rm -f .venv/.installed-* && touch "$stamp"
fi
if [ "$with_tests" = 1 ]; then
  # The test suite's third-party backends (testkit, tally), installed as any plugin would be.
  # ./run.sh's worker offers only the built-in backends, so they never show up there.
  tests_stamp=.venv/.tests-installed-$(sha256sum tests/plugin_pkg/pyproject.toml | cut -c1-16)
  if [ ! -f "$tests_stamp" ]; then
    .venv/bin/python -m pip install -q -e tests/plugin_pkg
    rm -f .venv/.tests-installed-* && touch "$tests_stamp"
  fi
fi
