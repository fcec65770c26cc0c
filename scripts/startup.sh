#!/usr/bin/env bash
# Where a vLLM start goes: REPRO_STARTUP_REPEATS starts of each configuration in
# REPRO_STARTUP_CONFIGURATIONS (preload: the defaults with a preload server; fast: the defaults
# without one; upstream: vLLM's own layout, no warm-up, no preload) against one LMCache server, each timed from the script (preflight
# and guard included) to ready for measured requests, split into phases from vLLM's log, then
# two cold requests of REPRO_STARTUP_PROMPT_TOKENS (the first pays what the start left over).
# Writes results/runs/<UTC>-startup/startup.json and startup.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight startup # every knob, before any server starts

PRELOAD_PID=""
new_run startup '[[ -z $PRELOAD_PID ]] || stop_server preload "$PRELOAD_PID" "$REPRO_LOG_DIR/preload.log"'

# The preload configuration needs a preload server: the one running, else one of this run's.
if [[ ,$REPRO_STARTUP_CONFIGURATIONS, == *,preload,* ]] && ! preload_answers; then
  REPRO_PRELOAD=auto
  read_command preload
  mkdir -p "$(dirname "$REPRO_PRELOAD_SOCKET")"
  start_server preload "$REPRO_LOG_DIR/preload.log" "${CMD[@]}"
  PRELOAD_PID=$SERVER_PID
  wait_ready preload "$PRELOAD_PID" "unix:$REPRO_PRELOAD_SOCKET" 300 "$REPRO_LOG_DIR/preload.log"
fi
REPRO_PRELOAD=off up_lmcache "$REPRO_LOG_DIR/lmcache.log"
for configuration in ${REPRO_STARTUP_CONFIGURATIONS//,/ }; do
  case $configuration in
    preload) layout=fast warmup=1 preload=auto ;;
    fast) layout=fast warmup=1 preload=off ;;
    upstream) layout=upstream warmup=0 preload=off ;;
    *) die "REPRO_STARTUP_CONFIGURATIONS: unknown configuration '$configuration' (preload, fast, upstream)" ;;
  esac
  for ((i = 1; i <= REPRO_STARTUP_REPEATS; i++)); do
    echo "=== $configuration start $i/$REPRO_STARTUP_REPEATS (REPRO_VLLM_LAYOUT=$layout REPRO_VLLM_WARMUP=$warmup REPRO_PRELOAD=$preload)"
    clear_lmcache
    started=$(now)
    REPRO_VLLM_LAYOUT=$layout REPRO_VLLM_WARMUP=$warmup REPRO_PRELOAD=$preload up_vllm "$REPRO_LOG_DIR/vllm-$configuration-$i.log"
    warmed=$(now)
    REPRO_VLLM_LAYOUT=$layout REPRO_VLLM_WARMUP=$warmup "$REPRO" startup --run-dir "$run_dir" \
      --configuration "$configuration" --log "$VLLM_LOG" --started "$started" --ready "$READY_AT" \
      --warmed "$warmed" --tokens "$REPRO_STARTUP_PROMPT_TOKENS"
    down_vllm
  done
done
down_lmcache
"$REPRO" startup --report --run-dir "$run_dir"
