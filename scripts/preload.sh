#!/usr/bin/env bash
# The preload server, in the foreground (its own terminal, or `scripts/preload.sh &`): imports
# torch, transformers and the other heavy third-party libraries once, then forks every LMCache
# and vLLM server the workspace's scripts start (REPRO_PRELOAD=auto), so that a start imports
# only vLLM and LMCache, whose edits stay live. Ctrl-C (or SIGTERM) stops it and the servers it
# forked. Restart it after changing packages in .venv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

if preload_answers; then
  die "a preload server already answers at $REPRO_PRELOAD_SOCKET"
fi
mkdir -p "$(dirname "$REPRO_PRELOAD_SOCKET")"
read_command preload
run_foreground preload "unix:$REPRO_PRELOAD_SOCKET" 300 "${CMD[@]}"
