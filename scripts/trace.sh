#!/usr/bin/env bash
# One cold and one warm request of REPRO_TRACE_PROMPT_TOKENS through both servers, for each
# transfer mode in REPRO_TRACE_MODES: LMCache and vLLM start with REPRO_TRACE=1 (debug logs with
# milliseconds, LMCache's storage trace file), `repro trace` sends the pair and draws what the
# servers recorded (docs/data-path.md). Writes results/runs/<UTC>-trace/trace-<mode>.{json,png}.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight trace # every knob, before any server starts

export REPRO_TRACE=1
new_run trace
logs=$REPRO_LOG_DIR
for mode in ${REPRO_TRACE_MODES//,/ }; do
  echo "=== $mode"
  export REPRO_TRANSFER_MODE=$mode REPRO_LOG_DIR="$logs/$mode"
  mkdir -p "$REPRO_LOG_DIR"
  up_lmcache "$REPRO_LOG_DIR/lmcache.log"
  up_vllm "$REPRO_LOG_DIR/vllm.log"
  "$REPRO" trace --run-dir "$run_dir" --tokens "$REPRO_TRACE_PROMPT_TOKENS"
  down_vllm
  down_lmcache
done
