#!/usr/bin/env bash
# Tenant isolation through vLLM's cache_salt (repro tenants): one prompt under salt A, A again,
# salt B, no salt, no salt again, judged by both servers' counters, in each setup of
# REPRO_TENANTS_SETUPS: apc (vLLM's prefix cache alone, no LMCache), lmcache (one vLLM on LMCache
# with a disk L2: the L1 path, then L1 cleared before every step: the L2 path), shared (two vLLMs
# on one LMCache: KV stored through the first, read through the second).
# Writes results/runs/<UTC>-tenants/tenants-*.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight tenants # every knob, before any server starts

SECOND_PID="" SECOND_LOG=""
new_run tenants '[[ -z $SECOND_PID ]] || stop_server vllm-2 "$SECOND_PID" "$SECOND_LOG"; down_vllm; down_lmcache; rm -rf -- "$REPRO_L2_DISK_DIR"'
export REPRO_L2_DISK_DIR="$REPRO_L2_DISK_DIR/${run_dir##*/}"

status=0
for setup in ${REPRO_TENANTS_SETUPS//,/ }; do
  echo "=== tenants: $setup"
  case $setup in
  apc)
    REPRO_CONNECTOR=0 REPRO_PREFIX_CACHING=1 up_vllm "$REPRO_LOG_DIR/vllm-apc.log"
    REPRO_CONNECTOR=0 REPRO_PREFIX_CACHING=1 "$REPRO" tenants --path local --label apc --run-dir "$run_dir" || status=1
    down_vllm
    ;;
  lmcache)
    export REPRO_L2=disk
    up_lmcache "$REPRO_LOG_DIR/lmcache-l2.log"
    up_vllm "$REPRO_LOG_DIR/vllm-lmcache.log"
    "$REPRO" tenants --path local --label lmcache --run-dir "$run_dir" || status=1
    "$REPRO" tenants --path l2 --label l2 --run-dir "$run_dir" || status=1
    down_vllm
    down_lmcache
    export REPRO_L2=none
    ;;
  shared)
    up_lmcache "$REPRO_LOG_DIR/lmcache-shared.log"
    # One after the other: two starting at once share the two cores.
    REPRO_VLLM_PORT=$REPRO_SECOND_VLLM_PORT up_vllm "$REPRO_LOG_DIR/vllm-2.log"
    SECOND_PID=$VLLM_PID SECOND_LOG=$VLLM_LOG VLLM_PID=""
    up_vllm "$REPRO_LOG_DIR/vllm-1.log"
    "$REPRO" tenants --path shared --run-dir "$run_dir" || status=1
    down_vllm
    stop_server vllm-2 "$SECOND_PID" "$SECOND_LOG"
    SECOND_PID=""
    down_lmcache
    ;;
  esac
done
exit "$status"
