# Helpers shared by the workspace's scripts. Source it; do not run it.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "error: $*" >&2
  exit 1
}

# Export every knob of defaults.env that the environment does not already set.
load_defaults() {
  local line key value
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    key=${line%%=*}
    value=${line#*=}
    if [[ -z ${!key+x} ]]; then
      export "$key=${value/#\~/$HOME}"
    fi
  done <"$REPO_ROOT/defaults.env"
}

load_defaults

REPRO="$REPO_ROOT/.venv/bin/repro"

require_env() {
  [[ -x $REPRO ]] || die "the environment is not set up: run scripts/setup.sh"
}

# Read the NUL-separated argv that `repro command NAME` prints into the array CMD.
read_command() {
  CMD=()
  local arg
  while IFS= read -r -d '' arg; do CMD+=("$arg"); done < <("$REPRO" command "$1")
  [[ ${#CMD[@]} -gt 0 ]] || die "could not build the $1 command (see above)"
}

# Wait until the LMCache server answers (started elsewhere, e.g. in terminal A).
wait_for_lmcache() {
  local url waited=0
  url="$("$REPRO" url lmcache)/healthcheck"
  curl -sf -o /dev/null --max-time 2 "$url" && return 0
  echo "vllm: waiting for the LMCache server at $url (start it with scripts/start_lmcache.sh)"
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    ((waited < REPRO_LMCACHE_READY_TIMEOUT)) || die "no LMCache server at $url after ${waited} s: run scripts/start_lmcache.sh first"
    sleep 1
    waited=$((waited + 1))
  done
}

# start_server NAME LOG CMD...: run CMD in the background in its own process group, output to
# LOG, with a private TMPDIR (vLLM leaves files there) whose path goes to LOG.tmpdir.
# Sets SERVER_PID.
start_server() {
  local name=$1 log=$2 tmp
  shift 2
  mkdir -p "$(dirname "$log")"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/repro-$name.XXXXXX")
  echo "$tmp" >"$log.tmpdir"
  set -m
  TMPDIR=$tmp "$@" >"$log" 2>&1 </dev/null &
  SERVER_PID=$!
  set +m
  echo "$name: started, pid $SERVER_PID, log $log"
}

# answers URL: an http(s) URL answers with success, or a tcp://HOST:PORT accepts connections.
answers() {
  if [[ $1 == tcp://* ]]; then
    local hostport=${1#tcp://}
    (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
  else
    curl -sf -o /dev/null --max-time 2 "$1"
  fi
}

# wait_ready NAME PID URL TIMEOUT LOG: poll URL until it answers; fail with the log's tail if
# the process dies or the timeout passes.
wait_ready() {
  local name=$1 pid=$2 url=$3 timeout=$4 log=$5 start=$SECONDS next=15
  until answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name (pid $pid) exited before it was ready; last lines of $log:" >&2
      tail -n 40 "$log" >&2
      return 1
    fi
    if ((SECONDS - start >= timeout)); then
      echo "error: $name not ready at $url after ${timeout} s; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    if ((SECONDS - start >= next)); then
      echo "$name: waiting for $url ($((SECONDS - start)) s)"
      next=$((next + 15))
    fi
    sleep 1
  done
  READY_S=$((SECONDS - start))
  echo "$name: ready at $url after $READY_S s"
  # Remember its processes now: if it is killed later, its workers' segments are still known.
  group_pids "$pid" >"$log.pids"
}

# up_lmcache LOG: start the LMCache server in the background and wait until it is ready.
# Sets LMCACHE_PID and LMCACHE_LOG.
up_lmcache() {
  LMCACHE_LOG=$1
  "$REPRO" preflight lmcache
  read_command lmcache
  start_server lmcache "$LMCACHE_LOG" "${CMD[@]}"
  LMCACHE_PID=$SERVER_PID
  wait_ready lmcache "$LMCACHE_PID" "$("$REPRO" url lmcache)/healthcheck" "$REPRO_LMCACHE_READY_TIMEOUT" "$LMCACHE_LOG"
}

# up_vllm LOG: start vLLM in the background (after the namespace guard when it uses the
# connector) and wait until it is ready. Sets VLLM_PID, VLLM_LOG and READY_S.
up_vllm() {
  VLLM_LOG=$1
  "$REPRO" preflight vllm
  [[ $REPRO_CONNECTOR == 0 ]] || "$REPRO" guard
  read_command vllm
  start_server vllm "$VLLM_LOG" "${CMD[@]}"
  VLLM_PID=$SERVER_PID
  wait_ready vllm "$VLLM_PID" "$("$REPRO" url vllm)/v1/models" "$REPRO_VLLM_READY_TIMEOUT" "$VLLM_LOG"
}

# up_redis LOG: start the Redis server for LMCache's L2 and wait until it accepts connections.
# Sets REDIS_PID and REDIS_LOG.
up_redis() {
  REDIS_LOG=$1
  "$REPRO" preflight redis
  read_command redis
  mkdir -p "$REPRO_REDIS_DIR"
  start_server redis "$REDIS_LOG" "${CMD[@]}"
  REDIS_PID=$SERVER_PID
  wait_ready redis "$REDIS_PID" "$("$REPRO" url redis)" 30 "$REDIS_LOG"
}
down_redis() {
  [[ -z ${REDIS_PID:-} ]] || stop_server redis "$REDIS_PID" "$REDIS_LOG"
  REDIS_PID=""
}

# down_vllm / down_lmcache: stop what up_vllm / up_lmcache started (no-op when nothing runs).
down_vllm() {
  [[ -z ${VLLM_PID:-} ]] || stop_server vllm "$VLLM_PID" "$VLLM_LOG"
  VLLM_PID=""
}
down_lmcache() {
  [[ -z ${LMCACHE_PID:-} ]] || stop_server lmcache "$LMCACHE_PID" "$LMCACHE_LOG"
  LMCACHE_PID=""
}

# clear_lmcache: drop everything in the running LMCache server's L1.
clear_lmcache() {
  "$REPRO" lmcache-clear >/dev/null || die "could not clear the LMCache server's L1"
}

# Live processes in the process group led by PID (the server and everything it spawned).
group_pids() {
  ps -eo pid=,pgid=,stat= | awk -v g="$1" '$2 == g && $3 !~ /^Z/ { print $1 }'
}

# shm_of PID...: the /dev/shm files these processes have mapped or open (Linux), so that what
# they leave behind can be removed by ownership rather than by name.
shm_of() {
  local pid
  [[ -d /proc ]] || return 0
  for pid in "$@"; do
    cat "/proc/$pid/maps" 2>/dev/null | grep -o '/dev/shm/[^ ]*' || true
    ls -l "/proc/$pid/fd" 2>/dev/null | grep -o '/dev/shm/[^ ]*' || true
  done | sort -u
}

# still_mapped FILE: whether any live process still maps FILE (Linux).
still_mapped() {
  grep -qsF "$1" /proc/[0-9]*/maps 2>/dev/null
}

# remove_shm OWNED MAPPED: delete shared-memory segments left behind by a stopped group.
# OWNED are named after its processes (vLLM workers register /dev/shm/lmcache_kv_<pid>_<n>,
# which nobody unlinks and the LMCache server keeps mapped): always removed. MAPPED were
# mapped by the group (e.g. psm_* of a killed server): removed unless still in use elsewhere.
remove_shm() {
  local seg
  for seg in $1; do
    [[ -e $seg ]] || continue
    rm -f -- "$seg" && echo "removed leftover shared memory $seg"
  done
  for seg in $2; do
    [[ -e $seg ]] && ! still_mapped "$seg" || continue
    rm -f -- "$seg" && echo "removed leftover shared memory $seg"
  done
}

# stop_server NAME PID LOG [GRACE]: SIGTERM the process group, SIGKILL what is left after
# GRACE seconds, then remove the group's shared-memory segments and private TMPDIR.
stop_server() {
  local name=$1 pid=$2 log=$3 grace=${4:-30} pids owned="" mapped p waited=0
  pids="$(group_pids "$pid") $(cat "$log.pids" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  mapped=$(shm_of $pids)
  for p in $pid $pids; do
    owned="$owned $(ls /dev/shm/lmcache_kv_"$p"_* 2>/dev/null || true)"
  done
  # The group, not only its leader: a killed API server leaves its engine processes behind.
  if [[ -n $(group_pids "$pid") ]]; then
    echo "$name: stopping pid $pid"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while [[ -n $(group_pids "$pid") ]] && ((waited < grace * 2)); do
      sleep 0.5
      waited=$((waited + 1))
    done
    if [[ -n $(group_pids "$pid") ]]; then
      echo "$name: still running after ${grace} s, sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
      waited=0
      while [[ -n $(group_pids "$pid") ]] && ((waited < 20)); do
        sleep 0.5
        waited=$((waited + 1))
      done
    fi
  fi
  wait "$pid" 2>/dev/null || true
  remove_shm "$owned" "$mapped"
  if [[ -f $log.tmpdir ]]; then
    rm -rf -- "$(cat "$log.tmpdir")" "$log.tmpdir"
  fi
  rm -f -- "$log.pids"
}

# run_foreground NAME URL TIMEOUT CMD...: a server in the foreground of a terminal (A or B):
# its log on screen, ready when URL answers, Ctrl-C stops it and cleans up.
run_foreground() {
  local status=0
  FG_NAME=$1 FG_LOG="$REPRO_LOG_DIR/$1.log"
  local url=$2 timeout=$3
  shift 3
  start_server "$FG_NAME" "$FG_LOG" "$@"
  FG_PID=$SERVER_PID
  tail -n +1 -f "$FG_LOG" &
  FG_TAIL=$!
  trap 'kill "$FG_TAIL" 2>/dev/null || true; stop_server "$FG_NAME" "$FG_PID" "$FG_LOG"' EXIT
  trap 'exit 130' INT TERM
  wait_ready "$FG_NAME" "$FG_PID" "$url" "$timeout" "$FG_LOG"
  echo "$FG_NAME: serving; Ctrl-C stops it"
  wait "$FG_PID" || status=$?
  echo "$FG_NAME: exited with status $status" >&2
  exit "$status"
}
