#!/usr/bin/env bash
# The test command: bring the environment up to date, then run the whole pytest suite
# (end-to-end tests included). Extra arguments go to pytest, e.g. scripts/test.sh -m "not e2e".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
