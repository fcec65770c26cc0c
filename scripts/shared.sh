#!/usr/bin/env bash
# Two vLLM instances (REPRO_VLLM_PORT and REPRO_SECOND_VLLM_PORT, same model and dtype) on one
# LMCache server: a prompt prefilled on one is a hit on the other, both ways.
# Writes results/runs/<UTC>-shared/shared.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight shared # every knob, before any server starts

SECOND_PID="" SECOND_LOG=""
new_run shared '[[ -z $SECOND_PID ]] || stop_server vllm-2 "$SECOND_PID" "$SECOND_LOG"'

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
# One after the other: two starting at once share the two cores and both take twice as long.
REPRO_VLLM_PORT=$REPRO_SECOND_VLLM_PORT up_vllm "$REPRO_LOG_DIR/vllm-2.log"
SECOND_PID=$VLLM_PID SECOND_LOG=$VLLM_LOG VLLM_PID=""
up_vllm "$REPRO_LOG_DIR/vllm-1.log"
"$REPRO" shared --run-dir "$run_dir"
