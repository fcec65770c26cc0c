#!/usr/bin/env bash
# The test command: bring the environment up to date, then run the whole pytest suite
# (end-to-end tests included). --quick: the edit-loop tier, unit tests plus one real cold/warm
# round on the real servers (a few minutes). --pristine: also the end-to-end fault cases on the
# pristine upstream code (REPRO_TEST_PRISTINE=1). Other arguments go to pytest, e.g.
# scripts/test.sh -m "not e2e".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

args=()
for arg in "$@"; do
  if [[ $arg == --quick ]]; then
    args+=(-m "quick or not (e2e or setup or environment or upstream)")
  elif [[ $arg == --pristine ]]; then
    export REPRO_TEST_PRISTINE=1
  else
    args+=("$arg")
  fi
done
scripts/setup.sh
exec .venv/bin/python -m pytest ${args[@]+"${args[@]}"}
