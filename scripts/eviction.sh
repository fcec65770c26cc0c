#!/usr/bin/env bash
# L1 eviction: for each policy in REPRO_EVICTION_POLICIES, an LMCache server with an L1 of
# REPRO_EVICTION_L1_SIZE_GB and a vLLM; REPRO_EVICTION_PROMPTS distinct prompts stream through,
# then each is probed; every hit is checked against the policy's prediction.
# Writes results/runs/<UTC>-eviction/eviction-<policy>.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight eviction # every knob, before any server starts

export REPRO_L1_SIZE_GB=$REPRO_EVICTION_L1_SIZE_GB
new_run eviction

status=0
for policy in ${REPRO_EVICTION_POLICIES//,/ }; do
  export REPRO_EVICTION_POLICY=$policy
  echo "=== eviction policy $policy, L1 $REPRO_L1_SIZE_GB GiB"
  up_lmcache "$REPRO_LOG_DIR/lmcache-$policy.log"
  up_vllm "$REPRO_LOG_DIR/vllm-$policy.log"
  "$REPRO" eviction --run-dir "$run_dir" || status=1
  down_vllm
  down_lmcache
done
exit "$status"
