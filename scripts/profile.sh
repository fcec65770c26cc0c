#!/usr/bin/env bash
# Where does a warm request's CPU time go? Starts LMCache and vLLM, stores REPRO_PROFILE_REQUESTS
# prompts of REPRO_PROFILE_TOKENS (cold, not profiled), then samples every process of both
# servers with py-spy while the same prompts come again (warm), and prints the top functions.
# Writes results/runs/<UTC>-profile/{vllm,lmcache}.pyspy.txt (raw stacks) and profile.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
PYSPY="$REPO_ROOT/.venv/bin/py-spy"
[[ -x $PYSPY ]] || die "py-spy is not installed: run scripts/setup.sh"

export REPRO_PROMPT_TOKENS=$REPRO_PROFILE_TOKENS
SPIES=()
new_run profile stop_spies
stop_spies() { [[ ${#SPIES[@]} -eq 0 ]] || { kill -INT "${SPIES[@]}" 2>/dev/null || true; wait "${SPIES[@]}" 2>/dev/null || true; }; SPIES=(); }

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
up_vllm "$REPRO_LOG_DIR/vllm.log"
seed="profile-$(date +%s)"
"$REPRO" e2e --run-dir "$run_dir" --seed "$seed" --rounds cold --repeats "$REPRO_PROFILE_REQUESTS" --output cold.json
for server in vllm:$VLLM_PID lmcache:$LMCACHE_PID; do
  "$PYSPY" record --pid "${server#*:}" --subprocesses --nonblocking --rate "$REPRO_PROFILE_RATE" --format raw \
    -o "$run_dir/${server%%:*}.pyspy.txt" >"$REPRO_LOG_DIR/py-spy-${server%%:*}.log" 2>&1 &
  SPIES+=($!)
done
sleep 2  # py-spy attaches
REPRO_WARMUP_TOKENS=0 "$REPRO" e2e --run-dir "$run_dir" --seed "$seed" --rounds warm \
  --repeats "$REPRO_PROFILE_REQUESTS" --output warm.json
stop_spies
"$REPRO" profile-report "$run_dir" | tee "$run_dir/profile.txt"
