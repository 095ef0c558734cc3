#!/usr/bin/env bash
# The main job: an embedded, persistent Temporal dev server with its UI, a worker with the
# built-in backends, and a short live demonstration. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m cli serve "$@"
