#!/usr/bin/env bash
# Attribution matrix: the same prompts under four configurations -- no cache (none), vLLM's
# prefix cache only (apc), LMCache only (lmcache), both -- plus a vLLM restart against the
# same LMCache (cross-instance), the scenarios (unrelated prompt, shared prefix, multi-turn
# chat) and the engine_driven transfer mode over its pickle and shm data paths. vLLM restarts
# between configurations; LMCache stays up (cleared between them) except to switch to shm.
# Writes results/runs/<UTC>-matrix/matrix.json and prints the table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

new_run matrix
seed="matrix-$(date +%s)"

# configuration NAME CONNECTOR PREFIX_CACHING [TRANSFER_MODE] [ROUNDS]: restart vLLM so, run rounds.
configuration() {
  local name=$1 rounds=${5:-cold,warm}
  [[ ,$REPRO_MATRIX_CONFIGURATIONS, == *,$name,* ]] || return 0
  export REPRO_CONNECTOR=$2 REPRO_PREFIX_CACHING=$3 REPRO_TRANSFER_MODE=${4:-lmcache_driven}
  echo "=== configuration $name: connector=$2 prefix_caching=$3 transfer=$REPRO_TRANSFER_MODE rounds=$rounds"
  [[ $rounds != cold,warm ]] || clear_lmcache
  up_vllm "$REPRO_LOG_DIR/vllm-$name.log"
  "$REPRO" e2e --run-dir "$run_dir" --seed "$seed" --configuration "$name" --rounds "$rounds" \
    --output "rounds-$name.json" || echo "configuration $name: verdicts failed (see above)"
  if [[ $name == lmcache ]]; then
    "$REPRO" scenarios --seed "$seed" --output "$run_dir/scenarios-lmcache.json" || true
  fi
  down_vllm
}

[[ ,$REPRO_MATRIX_CONFIGURATIONS, == *,none,* ]] || die "REPRO_MATRIX_CONFIGURATIONS must include none (the baseline every answer is compared with)"
[[ ,$REPRO_MATRIX_CONFIGURATIONS, != *,lmcache-restarted,* || ,$REPRO_MATRIX_CONFIGURATIONS, == *,lmcache,* ]] ||
  die "REPRO_MATRIX_CONFIGURATIONS: lmcache-restarted needs lmcache (it replays lmcache's prompts)"
up_lmcache "$REPRO_LOG_DIR/lmcache.log"
configuration none 0 0
configuration apc 0 1
configuration lmcache 1 0
configuration lmcache-restarted 1 0 lmcache_driven restart
configuration both 1 1
configuration lmcache-engine-pickle 1 0 engine_driven
down_lmcache
if [[ ,$REPRO_MATRIX_CONFIGURATIONS, == *,lmcache-engine-shm,* ]]; then
  REPRO_LMCACHE_SHM_NAME="repro_lmcache_$REPRO_LMCACHE_PORT" up_lmcache "$REPRO_LOG_DIR/lmcache-shm.log"
  configuration lmcache-engine-shm 1 0 engine_driven
  down_lmcache
fi

"$REPRO" matrix-report "$run_dir"
