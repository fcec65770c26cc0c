#!/usr/bin/env bash
# An interleaved A/B of two states of the code, or of two knob sets, measured in one run:
#   scripts/ab.sh                                  # A: both checkouts at REPRO_DEV_BASE (HEAD), B: your working trees
#   scripts/ab.sh --a LMCache@v0.5.6 --b tree      # a git ref of one checkout against the working tree
#   scripts/ab.sh --a REPRO_PATCHES=upstream --b REPRO_PATCHES=all    # the patch set off vs on
#   scripts/ab.sh --a REPRO_X=1 --b REPRO_X=2      # two knob sets
#   --label NAME names the run folder (results/runs/<UTC>-NAME; default ab).
# Both arms' LMCache and vLLM servers run side by side (arm B on ports + REPRO_AB_PORT_OFFSET)
# and are sampled in turn, block by block in random order, until the intervals are narrow
# enough (REPRO_AB_*, defaults.env). Prints B/A per metric with its 95 % interval and verdict;
# records results/runs/<UTC>-ab/ab.json and report.html; stops every server it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

usage="usage: scripts/ab.sh [--label NAME] [--a WORD...] [--b WORD...] (WORD: KNOB=value, CHECKOUT@REF, @REF or tree)"
A_WORDS=() B_WORDS=() side="" label=ab
while [[ $# -gt 0 ]]; do
  case $1 in
  --a | --b) side=${1#--} ;;
  --label)
    [[ $# -ge 2 && $2 =~ ^[A-Za-z0-9_-]+$ ]] || die "$usage"
    label=$2
    shift
    ;;
  -h | --help)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    [[ -n $side ]] || die "$usage"
    if [[ $side == a ]]; then A_WORDS+=("$1"); else B_WORDS+=("$1"); fi
    ;;
  esac
  shift
done
"$REPRO" preflight ab # every knob, before any server starts

declare -A LM_PID=() VL_PID=()
PRELOAD_STARTED=""
stop_arms() { # both vLLMs at once, then both LMCaches (whose clients they are)
  stop_servers vllm-a "${VL_PID[a]:-}" "$REPRO_LOG_DIR/vllm-a.log" vllm-b "${VL_PID[b]:-}" "$REPRO_LOG_DIR/vllm-b.log"
  VL_PID=()
  stop_servers lmcache-a "${LM_PID[a]:-}" "$REPRO_LOG_DIR/lmcache-a.log" lmcache-b "${LM_PID[b]:-}" "$REPRO_LOG_DIR/lmcache-b.log"
  LM_PID=()
  [[ -z $PRELOAD_STARTED ]] || stop_server preload "$PRELOAD_STARTED" "$REPRO_LOG_DIR/preload.log"
  PRELOAD_STARTED=""
}
new_run "$label" stop_arms
started=$SECONDS

"$REPRO" ab arms --run-dir "$run_dir" --a "${A_WORDS[@]}" --b "${B_WORDS[@]}"

# in_arm ARM CMD...: CMD (a function or a program) with the arm's knobs exported (bash's
# dynamic scope: the functions CMD calls see them too).
in_arm() {
  local arm=$1 kv
  shift
  while IFS= read -r -d '' kv; do local -x "$kv"; done < <("$REPRO" ab env "$arm" --run-dir "$run_dir")
  "$@"
}

# An arm that asks for the preload server (REPRO_PRELOAD=auto) gets one, started for this run.
want_preload() { [[ $REPRO_PRELOAD == auto ]] && ! preload_answers; }
if in_arm a want_preload || in_arm b want_preload; then
  read_command preload
  mkdir -p "$(dirname "$REPRO_PRELOAD_SOCKET")"
  start_server preload "$REPRO_LOG_DIR/preload.log" "${CMD[@]}"
  PRELOAD_STARTED=$SERVER_PID
  wait_ready preload "$SERVER_PID" "unix:$REPRO_PRELOAD_SOCKET" 300 "$REPRO_LOG_DIR/preload.log"
fi

# Both arms start together (their imports overlap); LMCache first, as vLLM's connector needs it.
for arm in a b; do
  in_arm "$arm" launch_lmcache "lmcache-$arm" "$REPRO_LOG_DIR/lmcache-$arm.log"
  LM_PID[$arm]=$SERVER_PID
done
for arm in a b; do in_arm "$arm" await_lmcache "lmcache-$arm" "${LM_PID[$arm]}" "$REPRO_LOG_DIR/lmcache-$arm.log"; done
for arm in a b; do
  in_arm "$arm" launch_vllm "vllm-$arm" "$REPRO_LOG_DIR/vllm-$arm.log"
  VL_PID[$arm]=$SERVER_PID
done
for arm in a b; do in_arm "$arm" ready_vllm "vllm-$arm" "${VL_PID[$arm]}" "$REPRO_LOG_DIR/vllm-$arm.log"; done
# Both warm-up requests at once (each is mostly the sampler's compile, one per process).
warmers=()
for arm in a b; do
  in_arm "$arm" warm_vllm "vllm-$arm" "${VL_PID[$arm]}" "$REPRO_LOG_DIR/vllm-$arm.log" &
  warmers+=("$!")
done
for pid in "${warmers[@]}"; do wait "$pid"; done
t_start=$((SECONDS - started))

t0=$SECONDS
run_client "$REPRO" ab run --run-dir "$run_dir"
t_sample=$((SECONDS - t0))
t0=$SECONDS
stop_arms
echo "ab: $((SECONDS - started)) s in all = servers up $t_start s + sampling $t_sample s + stop $((SECONDS - t0)) s"
