#!/usr/bin/env bash
# `lmcache bench server` in CPU mode against an LMCache server (the running one, or one started
# here and stopped afterwards). Records its JSON under results/runs/<UTC>-server-bench/.
# Knobs: REPRO_TRANSFER_MODE, REPRO_BENCH_NUM_TOKENS, REPRO_BENCH_REQUESTS (see defaults.env).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

new_run "server-bench-$REPRO_TRANSFER_MODE"
base_url=$("$REPRO" url lmcache)

if curl -sf -o /dev/null --max-time 2 "$base_url/healthcheck"; then
  echo "server_bench: using the LMCache server at $base_url"
else
  "$REPRO" preflight lmcache
  read_command lmcache
  LMCACHE_LOG="$REPRO_LOG_DIR/lmcache.log"
  start_server lmcache "$LMCACHE_LOG" "${CMD[@]}"
  LMCACHE_PID=$SERVER_PID
  wait_ready lmcache "$LMCACHE_PID" "$base_url/healthcheck" "$REPRO_LMCACHE_READY_TIMEOUT" "$LMCACHE_LOG"
fi

# Fresh sequence numbers: the bench reports failures for sequences the server already holds.
start=$(($(date +%s) % 1000000 * 100))
"$REPO_ROOT/.venv/bin/lmcache" bench server \
  --rpc-url "tcp://$REPRO_HOST:$REPRO_LMCACHE_PORT" --url "$base_url" --mode cpu \
  --transfer-mode "$REPRO_TRANSFER_MODE" --num-tokens "$REPRO_BENCH_NUM_TOKENS" \
  --start "$start" --end "$((start + REPRO_BENCH_REQUESTS))" \
  --format json --output "$run_dir/server_bench.json" >"$run_dir/bench.log" 2>&1 ||
  { tail -n 30 "$run_dir/bench.log" >&2; die "lmcache bench server failed (log: $run_dir/bench.log)"; }
"$REPRO" bench-summary "$run_dir/server_bench.json"
