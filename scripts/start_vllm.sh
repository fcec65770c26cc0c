#!/usr/bin/env bash
# Terminal B: the CPU vLLM server with LMCacheMPConnector in the foreground. Waits for the
# LMCache server first. Ctrl-C stops vLLM and everything it started, shared memory included.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight vllm
lmcache_url="$("$REPRO" url lmcache)/healthcheck"
if ! curl -sf -o /dev/null --max-time 2 "$lmcache_url"; then
  echo "vllm: waiting for the LMCache server at $lmcache_url (start it with scripts/start_lmcache.sh)"
  waited=0
  until curl -sf -o /dev/null --max-time 2 "$lmcache_url"; do
    ((waited < REPRO_LMCACHE_READY_TIMEOUT)) || die "no LMCache server at $lmcache_url after ${waited} s: run scripts/start_lmcache.sh first"
    sleep 1
    waited=$((waited + 1))
  done
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
