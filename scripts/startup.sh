#!/usr/bin/env bash
# Where a vLLM start goes: REPRO_STARTUP_REPEATS starts of each configuration in
# REPRO_STARTUP_CONFIGURATIONS against one LMCache server, each timed from the script (preflight
# and guard included) to ready for measured requests, split into phases from vLLM's log, then
# two cold requests of REPRO_STARTUP_PROMPT_TOKENS (the first pays what the start left over).
# Writes results/runs/<UTC>-startup/startup.json and startup.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

run_dir="$REPRO_RESULTS_DIR/runs/$(date -u +%Y%m%dT%H%M%SZ)-startup"
export REPRO_LOG_DIR="$run_dir/logs"
mkdir -p "$REPRO_LOG_DIR"
LMCACHE_PID="" VLLM_PID=""
on_exit 'down_vllm; down_lmcache'

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
for configuration in ${REPRO_STARTUP_CONFIGURATIONS//,/ }; do
  case $configuration in
    fast) layout=fast warmup=1 ;;
    upstream) layout=upstream warmup=0 ;;
    *) die "REPRO_STARTUP_CONFIGURATIONS: unknown configuration '$configuration' (fast, upstream)" ;;
  esac
  for ((i = 1; i <= REPRO_STARTUP_REPEATS; i++)); do
    echo "=== $configuration start $i/$REPRO_STARTUP_REPEATS (REPRO_VLLM_LAYOUT=$layout REPRO_VLLM_WARMUP=$warmup)"
    clear_lmcache
    started=$(now)
    REPRO_VLLM_LAYOUT=$layout REPRO_VLLM_WARMUP=$warmup up_vllm "$REPRO_LOG_DIR/vllm-$configuration-$i.log"
    warmed=$(now)
    REPRO_VLLM_LAYOUT=$layout REPRO_VLLM_WARMUP=$warmup "$REPRO" startup --run-dir "$run_dir" \
      --configuration "$configuration" --log "$VLLM_LOG" --started "$started" --ready "$READY_AT" \
      --warmed "$warmed" --tokens "$REPRO_STARTUP_PROMPT_TOKENS"
    down_vllm
  done
done
down_lmcache
"$REPRO" startup --report --run-dir "$run_dir"
