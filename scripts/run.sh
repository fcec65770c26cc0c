#!/usr/bin/env bash
# THE main command: set up if needed, start LMCache and vLLM in the background (logs in the
# run's folder), send cold and warm prompts, print the table, stop both servers.
# Any knob of defaults.env can be set in the environment, e.g. REPRO_PROMPT_TOKENS=640 scripts/run.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

new_run run
echo "setup: scripts/setup.sh (log $REPRO_LOG_DIR/setup.log)"
scripts/setup.sh >"$REPRO_LOG_DIR/setup.log" 2>&1 ||
  { tail -n 30 "$REPRO_LOG_DIR/setup.log" >&2; die "setup failed (log: $REPRO_LOG_DIR/setup.log)"; }
grep '^setup complete' "$REPRO_LOG_DIR/setup.log"
"$REPRO" preflight lmcache
"$REPRO" preflight vllm

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
up_vllm "$REPRO_LOG_DIR/vllm.log"

status=0
"$REPRO" e2e --run-dir "$run_dir" || status=$?
for server in lmcache:$LMCACHE_PID vllm:$VLLM_PID; do
  if ! is_running "${server#*:}"; then
    echo "error: the ${server%%:*} server died during the run; last lines of its log:" >&2
    tail -n 30 "$REPRO_LOG_DIR/${server%%:*}.log" >&2
    status=1
  fi
done
exit "$status"
