#!/usr/bin/env bash
# The workload sweep: upstream load generators (`vllm bench serve`'s prefix_repetition dataset;
# `lmcache bench engine` long-doc-qa) against none, vLLM's prefix cache (APC), LMCache, and both,
# with working sets from below to above vLLM's own KV capacity (REPRO_WORKLOAD_CAPACITY_TOKENS)
# and at each concurrency of REPRO_WORKLOAD_CONCURRENCY. LMCache stays up (cleared per point);
# vLLM restarts per configuration and concurrency. Knobs: REPRO_WORKLOAD_* (defaults.env).
# Writes results/runs/<UTC>-workload/workload.json, its table and plots (report.html).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight workload # every knob, before any server starts
new_run workload

# configuration NAME CONCURRENCY: vLLM with the knobs in force (see `repro workload env`), every working set.
configuration() {
  echo "=== configuration $1, concurrency $2"
  up_vllm "$REPRO_LOG_DIR/vllm-$1-c$2.log"
  run_client "$REPRO" workload run --run-dir "$run_dir" --configuration "$1" --concurrency "$2" --vllm-ready-s "$READY_S"
  down_vllm
}

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
# The plan on fd 3: nothing in the loop can read it from stdin.
while read -r -u 3 name concurrency; do
  eval "$("$REPRO" workload env "$name" "$concurrency") configuration $name $concurrency"
done 3< <("$REPRO" workload plan)
down_lmcache
"$REPRO" workload-report "$run_dir"
