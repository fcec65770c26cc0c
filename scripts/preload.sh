#!/usr/bin/env bash
# The preload server, in the foreground (its own terminal, or `scripts/preload.sh &`): imports
# torch, transformers and the other heavy third-party libraries once, then forks every LMCache
# and vLLM server the workspace's scripts start (REPRO_PRELOAD=auto), so that a start imports
# only vLLM and LMCache, whose edits stay live. Ctrl-C (or SIGTERM) stops it and the servers it
# forked. Restart it after changing packages in .venv. `scripts/preload.sh stop` stops the one
# that answers (SIGTERM to the server, which stops what it forked; its script then cleans up).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

# One per REPRO_PATCHES mode (lib.sh picks the socket): upstream's imports the pristine trees.
name=preload
[[ $REPRO_PATCHES != upstream ]] || name=preload-upstream
if [[ ${1:-} == stop ]]; then
  preload_answers || { echo "preload: none answers at $REPRO_PRELOAD_SOCKET"; exit 0; }
  # The server leads its own process group; its pids were recorded when it became ready.
  pid=$(head -n 1 "$REPRO_LOG_DIR/$name.log.pids" 2>/dev/null || true)
  pgid=$(ps -o pgid= -p "${pid:-0}" 2>/dev/null | tr -d ' ' || true)
  [[ -n $pgid ]] || die "the preload server answers but its pid is not recorded in $REPRO_LOG_DIR/$name.log.pids"
  kill -TERM "$pgid"
  for _ in $(seq 60); do preload_answers || { echo "preload: stopped pid $pgid"; exit 0; }; sleep 0.5; done
  die "the preload server (pid $pgid) still answers 30 s after SIGTERM"
fi
if preload_answers; then
  die "a preload server already answers at $REPRO_PRELOAD_SOCKET (scripts/preload.sh stop stops it)"
fi
mkdir -p "$(dirname "$REPRO_PRELOAD_SOCKET")"
read_command preload
run_foreground "$name" "unix:$REPRO_PRELOAD_SOCKET" 300 "${CMD[@]}"
