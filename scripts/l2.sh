#!/usr/bin/env bash
# L2 tier: for each kind in REPRO_L2_KINDS (redis, disk), an LMCache server with that L2 adapter
# (plus the workspace's Redis server for redis; a fresh folder under REPRO_L2_DISK_DIR for disk,
# removed afterwards) and a vLLM; a prompt is stored, L1 is cleared, and the warm request must
# be served from L2. Writes results/runs/<UTC>-l2/l2-<kind>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight l2 # every knob, before any server starts

REDIS_PID=""
# Redis after the servers that use it; a fresh disk L2 folder per run, removed at the end.
new_run l2 'down_vllm; down_lmcache; down_redis; rm -rf -- "$REPRO_L2_DISK_DIR"'
export REPRO_L2_DISK_DIR="$REPRO_L2_DISK_DIR/${run_dir##*/}"

status=0
for kind in ${REPRO_L2_KINDS//,/ }; do
  export REPRO_L2=$kind
  echo "=== L2 on $kind"
  [[ $kind != redis ]] || up_redis "$REPRO_LOG_DIR/redis.log"
  up_lmcache "$REPRO_LOG_DIR/lmcache-$kind.log"
  up_vllm "$REPRO_LOG_DIR/vllm-$kind.log"
  "$REPRO" l2 --run-dir "$run_dir" || status=1
  down_vllm
  down_lmcache
  down_redis
done
exit "$status"
