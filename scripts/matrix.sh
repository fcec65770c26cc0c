#!/usr/bin/env bash
# Attribution matrix: the same prompts under four configurations -- no cache (none), vLLM's
# prefix cache only (apc), LMCache only (lmcache), both -- plus a vLLM restart against the
# same LMCache (cross-instance), the scenarios (unrelated prompt, shared prefix, multi-turn
# chat; with both caches: a prompt vLLM's cache covers, one it covers in part) and the
# engine_driven transfer mode over its pickle and shm data paths. vLLM restarts between
# configurations; LMCache stays up (cleared between them) except to switch to shm.
# Writes results/runs/<UTC>-matrix/matrix.json and prints the table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

plan=$("$REPRO" preflight matrix --plan) # every knob, before any server starts
new_run matrix
seed="matrix-$(date +%s)"

# configuration NAME CONNECTOR PREFIX_CACHING TRANSFER_MODE ROUNDS: restart vLLM so, run rounds.
configuration() {
  local name=$1 rounds=$5
  export REPRO_CONNECTOR=$2 REPRO_PREFIX_CACHING=$3 REPRO_TRANSFER_MODE=$4
  echo "=== configuration $name: connector=$2 prefix_caching=$3 transfer=$REPRO_TRANSFER_MODE rounds=$rounds"
  [[ $rounds != cold,warm ]] || clear_lmcache
  up_vllm "$REPRO_LOG_DIR/vllm-$name.log"
  "$REPRO" e2e --run-dir "$run_dir" --seed "$seed" --configuration "$name" --rounds "$rounds" \
    --output "rounds-$name.json" || echo "configuration $name: verdicts failed (see above)"
  if [[ $name == lmcache ]]; then
    "$REPRO" scenarios --seed "$seed" --output "$run_dir/scenarios-lmcache.json" || true
  elif [[ $name == both ]]; then
    "$REPRO" scenarios --apc --seed "$seed" --output "$run_dir/scenarios-both.json" || true
  fi
  down_vllm
}

# The steps of report/matrix.py (STEPS), one per line: NAME CONNECTOR APC TRANSFER ROUNDS SHM.
up_lmcache "$REPRO_LOG_DIR/lmcache.log"
shm_up=0
while read -r -u 3 name connector apc transfer rounds shm; do
  if [[ $shm == 1 && $shm_up == 0 ]]; then # LMCache again, with a shared-memory segment
    down_lmcache
    REPRO_LMCACHE_SHM_NAME="repro_lmcache_$REPRO_LMCACHE_PORT" up_lmcache "$REPRO_LOG_DIR/lmcache-shm.log"
    shm_up=1
  fi
  configuration "$name" "$connector" "$apc" "$transfer" "$rounds"
done 3<<<"$plan"
down_lmcache

"$REPRO" matrix-report "$run_dir"
