#!/usr/bin/env bash
# Terminal B: the CPU vLLM server with LMCacheMPConnector in the foreground. Waits for the
# LMCache server first. Ctrl-C stops vLLM and everything it started, shared memory included.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
enter_netns "$@"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight vllm
if [[ $REPRO_CONNECTOR == 1 ]]; then
  wait_for_lmcache
  "$REPRO" guard
fi
read_command vllm
run_foreground vllm "$("$REPRO" url vllm)/v1/models" "$REPRO_VLLM_READY_TIMEOUT" "${CMD[@]}"
