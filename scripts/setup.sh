#!/usr/bin/env bash
# Create .venv and install the project with its dev tools; safe to run again.
#   bash scripts/setup.sh           the project with every extra (.[all,dev]: what ./run.sh runs)
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

# Runs a long, quiet step and says so: a line when it starts, one every 15 s, one when it is done
# (a first run installs for minutes, silent otherwise). Progress goes to stderr.
progress() {
  local what=$1 start=$SECONDS ticker status=0
  shift
  echo "setup: $what..." >&2
  (while sleep 15; do echo "setup: $what... ($((SECONDS - start)) s)" >&2; done) &
  ticker=$!
  "$@" || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ "$status" = 0 ]; then echo "setup: $what: done in $((SECONDS - start)) s" >&2; fi
  return "$status"
}

apt_install() {
  $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && \
         $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

# Debian packages: bubblewrap (every session's sandbox), slirp4netns (the network of a session
# allowed one, without the host's loopback), and what the vm backend drives: a virtual X server,
# an input tool, a terminal to type into; Node and npm for the mcp backend's npm servers. With --tests also Chromium, which the UI test
# drives headless through Playwright (Playwright's own browser download is never used).
tools=(bwrap:bubblewrap slirp4netns:slirp4netns Xvfb:xvfb xdotool:xdotool xterm:xterm
       node:nodejs npm:npm)
if [ "$with_tests" = 1 ]; then tools+=(chromium:chromium); fi
missing=()
for tool in "${tools[@]}"; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo -n")
  export DEBIAN_FRONTEND=noninteractive
  progress "installing Debian packages: ${missing[*]}" apt_install "${missing[@]}"
fi
if [ ! -x .venv/bin/python ]; then
  progress "creating .venv" "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  progress "installing Python packages into .venv (a few minutes on a first run)" \
    sh -c '.venv/bin/python -m pip install -q --upgrade pip &&
           .venv/bin/python -m pip install -q -e ".[all,dev]"'
  rm -f .venv/.installed-* && touch "$stamp"
fi
if [ "$with_tests" = 1 ]; then
  # The test suite's third-party backends (testkit, tally), installed as any plugin would be.
  # ./run.sh's worker offers only the built-in backends, so they never show up there.
  tests_stamp=.venv/.tests-installed-$(sha256sum tests/plugin_pkg/pyproject.toml | cut -c1-16)
  if [ ! -f "$tests_stamp" ]; then
    progress "installing the test suite's plugin backends" \
      .venv/bin/python -m pip install -q -e tests/plugin_pkg
    rm -f .venv/.tests-installed-* && touch "$tests_stamp"
  fi
fi

# The mcp backend's servers (backends/mcp.py SERVERS_DIR): npm's filesystem and memory servers,
# and the `mcp` package for Python servers run by the system's python3 (PYTHONPATH=.../python).
# Under /usr/local because a session's jail sees /usr of the host and nothing else; pinned, and
# skipped when this set is there already.
mcp_dir=${DURABLE_SESSIONS_MCP_DIR:-/usr/local/lib/durable-sessions-mcp}
mcp_npm=(@modelcontextprotocol/server-filesystem@2026.8.31 @modelcontextprotocol/server-memory@2026.8.31)
mcp_python=mcp==2.3.0
mcp_stamp="$mcp_dir/.installed-$(echo "${mcp_npm[*]} $mcp_python" | sha256sum | cut -c1-16)"
if [ ! -f "$mcp_stamp" ]; then
  SUDO=$([ "$(id -u)" = 0 ] || [ -w "$(dirname "$mcp_dir")" ] && echo "" || echo "sudo -n")
  progress "installing the MCP servers into $mcp_dir" sh -c "
    $SUDO mkdir -p '$mcp_dir' &&
    $SUDO npm install -q --no-audit --no-fund --prefix '$mcp_dir' ${mcp_npm[*]} >/dev/null &&
    $SUDO .venv/bin/python -m pip install -q --no-warn-conflicts --target '$mcp_dir/python' \
      --upgrade '$mcp_python' &&
    $SUDO rm -f '$mcp_dir'/.installed-* && $SUDO touch '$mcp_stamp'"
fi
