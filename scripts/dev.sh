#!/usr/bin/env bash
# The edit-rerun-compare loop. Keeps an LMCache server up between reruns (restarted only when
# the code under LMCache/ changed), restarts vLLM (so edits under vllm/ and to the connector
# take effect), sends REPRO_DEV_REPEATS fresh cold+warm prompts per length, and compares the
# run with the previous dev run, printing where the time went. A preload server
# (scripts/preload.sh) is kept up too, so vLLM starts without re-importing torch & co.
# `scripts/dev.sh stop` stops the kept LMCache and preload servers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight dev # every knob, before any server starts

state="$REPRO_DEV_STATE_DIR"
mkdir -p "$state"
LMCACHE_PID=$(cat "$state/lmcache.pid" 2>/dev/null || true)
LMCACHE_LOG="$state/lmcache.log"
kept_alive() { [[ -n $LMCACHE_PID ]] && [[ -n $(group_pids "$LMCACHE_PID") ]]; }

PRELOAD_PID=$(cat "$state/preload.pid" 2>/dev/null || true)
if [[ ${1:-} == stop ]]; then
  kept_alive && down_lmcache || echo "dev: no kept LMCache server"
  if [[ -n $PRELOAD_PID && -n $(group_pids "$PRELOAD_PID") ]]; then
    stop_server preload "$PRELOAD_PID" "$state/preload.log"
  fi
  rm -f "$state/lmcache.pid" "$state/lmcache.fingerprint" "$state/preload.pid" "$state/preload.fingerprint"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: scripts/dev.sh [stop]"

started=$SECONDS
export REPRO_PROMPT_TOKENS=$REPRO_DEV_PROMPT_TOKENS
KEPT_LMCACHE_PID=$LMCACHE_PID
new_lmcache=""
# vLLM always stops; LMCache stops only when this rerun started it and failed.
new_run dev 'if [[ -z $new_lmcache ]]; then LMCACHE_PID=""; else rm -f "$state/lmcache.pid"; fi'
LMCACHE_PID=$KEPT_LMCACHE_PID

# The preload server (kept between reruns too): later starts skip importing torch & co.
# It imports vLLM's serving modules (REPRO_PRELOAD_VLLM): after an edit under vllm/ it restarts.
t0=$SECONDS
vllm_fingerprint=$("$REPRO" fingerprint vllm)
if [[ -n $PRELOAD_PID && -n $(group_pids "$PRELOAD_PID") ]] &&
  [[ $(cat "$state/preload.fingerprint" 2>/dev/null) != "$vllm_fingerprint" ]]; then
  echo "dev: vllm/ changed since the kept preload server imported it, restarting it"
  stop_server preload "$PRELOAD_PID" "$state/preload.log"
fi
if [[ $REPRO_PRELOAD == auto ]] && ! preload_answers; then
  read_command preload
  mkdir -p "$(dirname "$REPRO_PRELOAD_SOCKET")"
  DETACHED=1 start_server preload "$state/preload.log" "${CMD[@]}"
  echo "$SERVER_PID" >"$state/preload.pid"
  echo "$vllm_fingerprint" >"$state/preload.fingerprint"
  wait_ready preload "$SERVER_PID" "unix:$REPRO_PRELOAD_SOCKET" 300 "$state/preload.log"
fi
fingerprint=$("$REPRO" fingerprint LMCache)
if kept_alive && [[ $(cat "$state/lmcache.fingerprint" 2>/dev/null) == "$fingerprint" ]] &&
  curl -sf -o /dev/null --max-time 2 "$("$REPRO" url lmcache)/healthcheck"; then
  echo "dev: LMCache code unchanged, keeping the LMCache server (pid $LMCACHE_PID)"
  clear_lmcache
else
  if kept_alive; then
    echo "dev: LMCache code changed, restarting the LMCache server"
    down_lmcache
  fi
  new_lmcache=1
  DETACHED=1 up_lmcache "$LMCACHE_LOG"  # kept between reruns: it outlives this script
  echo "$LMCACHE_PID" >"$state/lmcache.pid"
  echo "$fingerprint" >"$state/lmcache.fingerprint"
fi

t_lmcache=$((SECONDS - t0))
t0=$SECONDS
up_vllm "$REPRO_LOG_DIR/vllm.log"
t_vllm=$((SECONDS - t0))
t0=$SECONDS
status=0
"$REPRO" e2e --run-dir "$run_dir" --repeats "$REPRO_DEV_REPEATS" || status=$?
t_rounds=$((SECONDS - t0))
t0=$SECONDS
down_vllm
t_stop=$((SECONDS - t0))
new_lmcache=""  # from here on the LMCache server is kept
t0=$SECONDS
if [[ $(find "$REPRO_RESULTS_DIR"/runs -maxdepth 2 -path "*-dev/run.json" 2>/dev/null | wc -l) -ge 2 ]]; then
  echo
  "$REPRO" compare --label dev || status=$?
else
  echo "dev: first dev run recorded; the next rerun is compared with it"
fi
t_compare=$((SECONDS - t0))
echo "dev: edit to verdict in $((SECONDS - started)) s = preload server + LMCache $t_lmcache s" \
  "+ vLLM start $t_vllm s (warm-up included) + rounds $t_rounds s + vLLM stop $t_stop s + compare $t_compare s"
echo "dev: LMCache and the preload server are kept up; scripts/dev.sh stop stops them"
exit "$status"
