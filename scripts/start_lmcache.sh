#!/usr/bin/env bash
# Terminal A: the LMCache MP server in the foreground. Ctrl-C stops it and cleans up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight lmcache
read_command lmcache
log="$REPRO_LOG_DIR/lmcache.log"
url="$("$REPRO" url lmcache)/healthcheck"

start_server lmcache "$log" "${CMD[@]}"
tail -n +1 -f "$log" &
tail_pid=$!
trap 'kill "$tail_pid" 2>/dev/null || true; stop_server lmcache "$SERVER_PID" "$log"' EXIT
trap 'exit 130' INT TERM

wait_ready lmcache "$SERVER_PID" "$url" "$REPRO_LMCACHE_READY_TIMEOUT" "$log"
echo "lmcache: serving; Ctrl-C stops it"
status=0
wait "$SERVER_PID" || status=$?
echo "lmcache: exited with status $status" >&2
exit "$status"
