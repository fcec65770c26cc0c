#!/usr/bin/env bash
# Terminal B: the CPU vLLM server with LMCacheMPConnector in the foreground. Waits for the
# LMCache server first. Ctrl-C stops vLLM and everything it started, shared memory included.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight vllm
if [[ $REPRO_CONNECTOR == 1 ]]; then
  wait_for_lmcache
  "$REPRO" guard
fi
read_command vllm
log="$REPRO_LOG_DIR/vllm.log"
url="$("$REPRO" url vllm)/v1/models"

start_server vllm "$log" "${CMD[@]}"
tail -n +1 -f "$log" &
tail_pid=$!
trap 'kill "$tail_pid" 2>/dev/null || true; stop_server vllm "$SERVER_PID" "$log"' EXIT
trap 'exit 130' INT TERM

wait_ready vllm "$SERVER_PID" "$url" "$REPRO_VLLM_READY_TIMEOUT" "$log"
echo "vllm: serving; Ctrl-C stops it"
status=0
wait "$SERVER_PID" || status=$?
echo "vllm: exited with status $status" >&2
exit "$status"
