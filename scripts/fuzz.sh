#!/usr/bin/env bash
# Hostile input (repro fuzz): schemathesis against vLLM's and LMCache's /openapi.json, targeted
# cases the schema cannot generate, then a cold/warm pair that must still hit. Servers on
# 127.0.0.1 only; stopped by PID at the end, their /dev/shm segments checked.
# Writes results/runs/<UTC>-fuzz/fuzz.json (+ fuzz-<server>.har, logs/schemathesis-*.log).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight fuzz # every knob, before any server starts

new_run fuzz
[[ $REPRO_CONNECTOR == 0 ]] || up_lmcache "$REPRO_LOG_DIR/lmcache.log"
up_vllm "$REPRO_LOG_DIR/vllm.log"
run_client "$REPRO" fuzz --run-dir "$run_dir"
