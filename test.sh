#!/usr/bin/env bash
# The whole test suite: lint, format check, type check, then pytest on a real Temporal server.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh --tests
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
