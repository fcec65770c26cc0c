# Helpers shared by the workspace's scripts. Source it; do not run it.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "error: $*" >&2
  exit 1
}

# Export every knob of defaults.env that the environment does not already set. One parser for
# bash and Python: src/reproduce_vllm_lmcache/config.py (standard library only, so any python3
# runs it, before the project environment exists).
load_defaults() {
  local exports
  exports=$(python3 "$REPO_ROOT/src/reproduce_vllm_lmcache/config.py") || die "could not read $REPO_ROOT/defaults.env (see above)"
  eval "$exports"
}

load_defaults
# REPRO_PATCHES=upstream has a preload server of its own: it imports the pristine trees.
if [[ $REPRO_PATCHES == upstream && $REPRO_PRELOAD_SOCKET != *-upstream.sock ]]; then
  export REPRO_PRELOAD_SOCKET="${REPRO_PRELOAD_SOCKET%.sock}-upstream.sock"
fi

# on_exit 'COMMANDS': run COMMANDS when the script ends, however it ends (exit, error, Ctrl-C,
# SIGTERM, hang-up), even when its output is gone (`| tee` whose reader died with the Ctrl-C, a
# closed terminal): cleanup ignores SIGPIPE and further signals, and goes on past failed writes.
on_exit() {
  # shellcheck disable=SC2064
  trap "trap '' PIPE INT TERM HUP; set +e; $1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

REPRO="$REPO_ROOT/.venv/bin/repro"

# new_run LABEL [CLEANUP]: a new run folder results/runs/<UTC>-LABEL in run_dir, its logs/ as
# REPRO_LOG_DIR, and the exit trap: CLEANUP (if any), stop the vLLM and LMCache servers this
# script started (by PID), then write the folder's report.html.
new_run() {
  run_dir="$REPRO_RESULTS_DIR/runs/$(date -u +%Y%m%dT%H%M%SZ)-$1"
  export REPRO_LOG_DIR="$run_dir/logs"
  mkdir -p "$REPRO_LOG_DIR"
  LMCACHE_PID="" VLLM_PID=""
  CLIENT_PID=""
  on_exit "${2:+$2; }stop_client; down_vllm; down_lmcache; report_run"
}

# run_client CMD...: a client (load generator, experiment step) as a waited-for child in its own
# process group, so that Ctrl-C or SIGTERM to this script stops it and its children at once
# (bash runs a trap only after a foreground child ends; `wait` returns on the signal).
run_client() {
  local status=0
  set -m
  with_parent "$@" </dev/null &
  CLIENT_PID=$!
  set +m
  has_pdeathsig || watch_parent "$CLIENT_PID"
  wait "$CLIENT_PID" || status=$?
  CLIENT_PID=""
  return "$status"
}

# stop_client: the client run_client is waiting for, with its process group (by PID).
stop_client() {
  [[ -n ${CLIENT_PID:-} ]] || return 0
  "$REPRO" proc stop "$CLIENT_PID" --name client --grace 10
  wait "$CLIENT_PID" 2>/dev/null
  CLIENT_PID=""
}

# report_run: report.html of run_dir (whatever the run got to) and the results index.
report_run() {
  [[ -d ${run_dir:-} ]] && "$REPRO" report "$run_dir" >/dev/null 2>&1 || true
}

require_env() {
  [[ -x $REPRO ]] || die "the environment is not set up: run scripts/setup.sh"
}

# read_argv PROGRAM ARGS...: the NUL-separated argv PROGRAM prints, into the array CMD.
read_argv() {
  CMD=()
  local arg
  while IFS= read -r -d '' arg; do CMD+=("$arg"); done < <("$@")
  [[ ${#CMD[@]} -gt 0 ]] || die "could not build a command line with: $* (see above)"
}

# Read the NUL-separated argv that `repro command NAME` prints into the array CMD.
read_command() {
  read_argv "$REPRO" command "$1"
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

has_pdeathsig() { setpriv --help 2>/dev/null | grep -q -- --pdeathsig; }

# with_parent CMD...: run CMD so that the kernel sends it SIGTERM when this script dies, even by
# SIGKILL (Linux: setpriv --pdeathsig; elsewhere a watcher process does the same by polling).
# DETACHED=1 (dev.sh's kept LMCache server) skips it: that server is meant to outlive the script.
with_parent() {
  if [[ ${DETACHED:-0} != 1 ]] && has_pdeathsig; then
    exec setpriv --pdeathsig TERM -- "$@"
  fi
  exec "$@"
}

# keep_compile_cache TMP: torch.compile keeps caches under TMPDIR/torchinductor_<user> (its
# precompiled C++ header always goes there, whatever TORCHINDUCTOR_CACHE_DIR says); a private
# TMPDIR would rebuild them at every start (10 s for the sampler's logprobs kernel), so that
# folder is a link to REPRO_COMPILE_CACHE_DIR, which outlives the starts.
keep_compile_cache() {
  local cache=$REPRO_COMPILE_CACHE_DIR user=${LOGNAME:-${USER:-${LNAME:-${USERNAME:-$(id -un)}}}}
  [[ $cache == /* ]] || cache="$REPO_ROOT/$cache"
  mkdir -p "$cache/torchinductor_$user"
  ln -s "$cache/torchinductor_$user" "$1/torchinductor_$user"
}

# start_server NAME LOG CMD...: run CMD in the background in its own process group, output to
# LOG, with a private TMPDIR (vLLM leaves files there) whose path goes to LOG.tmpdir; it gets
# SIGTERM when this script dies (with_parent). Sets SERVER_PID.
start_server() {
  local name=$1 log=$2 tmp
  shift 2
  mkdir -p "$(dirname "$log")"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/repro-$name.XXXXXX")
  echo "$tmp" >"$log.tmpdir"
  keep_compile_cache "$tmp"
  SERVER_VIA=""
  local status=1
  if [[ $name == vllm* || $name == lmcache* || $name == coordinator ]] && preload_answers; then
    # Forked by the preload server (its own session; stopped by it when this script is gone).
    # Status 3: it holds other vLLM code (edited since, or another tree); this start goes without it.
    SERVER_PID=$(TMPDIR=$tmp "$REPO_ROOT/.venv/bin/python" -m reproduce_vllm_lmcache.servers.preload spawn \
      --socket "$REPRO_PRELOAD_SOCKET" --log "$log" --owner "$(owner_pid)" -- "$@") && status=0 || status=$?
    if [[ $status == 0 ]]; then
      SERVER_VIA=preload
    elif [[ $status == 3 ]]; then
      echo "$name: starting without the preload server (reason above)"
    else
      die "the preload server did not start $name (stop it with scripts/preload.sh stop, or set REPRO_PRELOAD=off)"
    fi
  fi
  if [[ $SERVER_VIA != preload ]]; then
    set -m
    TMPDIR=$tmp with_parent "$@" >"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    set +m
    if [[ ${DETACHED:-0} != 1 ]] && ! has_pdeathsig; then
      watch_parent "$SERVER_PID"
    fi
  fi
  # For the next preflight: this folder is stale once that pid is gone (a SIGKILLed script).
  echo "$SERVER_PID" >"$tmp/repro-server.pid"
  echo "$name: started, pid $SERVER_PID${SERVER_VIA:+ (forked by the preload server)}, log $log"
}

# preload_answers: a preload server (scripts/preload.sh) is up and REPRO_PRELOAD allows it.
preload_answers() {
  [[ $REPRO_PRELOAD == auto && -S $REPRO_PRELOAD_SOCKET ]] &&
    "$REPO_ROOT/.venv/bin/python" -m reproduce_vllm_lmcache.servers.preload answers --socket "$REPRO_PRELOAD_SOCKET"
}

# owner_pid: the process whose death stops a server forked by the preload server: this script,
# or nothing (pid 1 never dies) for a server meant to outlive it (DETACHED=1).
owner_pid() {
  if [[ ${DETACHED:-0} == 1 ]]; then echo 1; else echo $$; fi
}

# await_exit PID: until the server exits; its exit status when it is this script's child.
await_exit() {
  if [[ ${SERVER_VIA:-} == preload ]]; then
    waited "$REPRO" proc wait-exit "$1"
    return 0
  fi
  wait "$1"
}

# watch_parent PID: where the kernel cannot do it (no setpriv), a small watcher stops PID's
# process group when this script is gone.
watch_parent() {
  local script=$$ pid=$1
  (
    trap '' INT HUP
    while kill -0 "$script" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
    kill -TERM -- "-$pid" 2>/dev/null || true
  ) >/dev/null 2>&1 </dev/null &
}

# waited CMD...: run CMD in the background and wait for it, so that Ctrl-C or SIGTERM to this
# script runs its trap at once (bash runs a trap only after a foreground child ends); CMD dies
# with the script.
waited() {
  with_parent "$@" </dev/null &
  wait "$!"
}

# is_running PID...: one of them exists and is not a zombie (servers/processes.py).
is_running() { "$REPRO" proc running "$@"; }

# group_pids PID: live processes of the process group led by PID, one per line.
group_pids() { "$REPRO" proc group "$1"; }

# now: seconds since the epoch, with a fraction where the shell has one (bash 5).
now() { echo "${EPOCHREALTIME:-$(date +%s)}"; }

# wait_ready NAME PID URL TIMEOUT LOG: poll URL (http(s)://, tcp://HOST:PORT, unix:SOCKET) until
# it answers; fail with the log's tail if the process dies or the timeout passes. Remembers the
# server's processes in LOG.pids (if it is killed later, its workers' segments are still known).
wait_ready() {
  local name=$1 pid=$2 start=$SECONDS
  waited "$REPRO" proc wait-ready "$pid" --name "$name" --url "$3" --timeout "$4" --log "$5" || return 1
  READY_S=$((SECONDS - start))
  READY_AT=$(now)
  echo "$name: ready at $3 after $READY_S s"
}

# warm_vllm NAME PID LOG: the first request's one-off work (REPRO_VLLM_WARMUP), before the
# server is reported ready; adds its time to READY_S.
warm_vllm() {
  local start=$SECONDS
  [[ $REPRO_VLLM_WARMUP == 1 ]] || return 0
  if ! "$REPRO" warmup; then
    echo "error: the warm-up request to $1 failed; last lines of $3:" >&2
    tail -n 30 "$3" >&2
    return 1
  fi
  READY_S=$((READY_S + SECONDS - start))
  echo "$1: ready for measured requests after $READY_S s"
}

# launch_lmcache NAME LOG / await_lmcache NAME PID LOG: start an LMCache server in the background
# (after its preflight; sets SERVER_PID), then wait until it answers. Apart, so that several
# servers can start at once (scripts/ab.sh).
launch_lmcache() {
  "$REPRO" preflight lmcache
  read_command lmcache
  start_server "$1" "$2" "${CMD[@]}"
}
await_lmcache() {
  wait_ready "$1" "$2" "$("$REPRO" url lmcache)/healthcheck" "$REPRO_LMCACHE_READY_TIMEOUT" "$3"
}

# up_lmcache LOG: start the LMCache server in the background and wait until it is ready.
# Sets LMCACHE_PID and LMCACHE_LOG.
up_lmcache() {
  LMCACHE_LOG=$1
  launch_lmcache lmcache "$LMCACHE_LOG"
  LMCACHE_PID=$SERVER_PID
  await_lmcache lmcache "$LMCACHE_PID" "$LMCACHE_LOG"
}

# launch_vllm NAME LOG / await_vllm NAME PID LOG: start vLLM in the background (after its
# preflight and, when it uses the connector, the namespace guard; sets SERVER_PID), then wait
# until it answers (ready_vllm) and send the warm-up (warm_vllm; sets READY_S).
launch_vllm() {
  "$REPRO" preflight vllm
  [[ $REPRO_CONNECTOR == 0 ]] || "$REPRO" guard
  read_command vllm
  start_server "$1" "$2" "${CMD[@]}"
}
await_vllm() {
  ready_vllm "$@"
  warm_vllm "$@"
}
ready_vllm() { wait_ready "$1" "$2" "$("$REPRO" url vllm)/v1/models" "$REPRO_VLLM_READY_TIMEOUT" "$3"; }

# up_vllm LOG: start vLLM and wait until it is ready. Sets VLLM_PID, VLLM_LOG and READY_S.
up_vllm() {
  VLLM_LOG=$1
  launch_vllm vllm "$VLLM_LOG"
  VLLM_PID=$SERVER_PID
  await_vllm vllm "$VLLM_PID" "$VLLM_LOG"
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

# stop_server NAME PID LOG [GRACE]: SIGTERM the process group, SIGKILL what is left after
# GRACE seconds, then remove the group's shared-memory segments and private TMPDIR
# (servers/processes.py stop_group).
stop_server() {
  "$REPRO" proc stop "$2" --name "$1" --log "$3" --grace "${4:-30}" || echo "error: could not stop $1 (pid $2) cleanly" >&2
  wait "$2" 2>/dev/null || true
}

# stop_servers NAME PID LOG [NAME PID LOG...]: stop_server for several servers at once (their
# shutdowns, ~2-3 s each, overlap); an empty PID is skipped.
stop_servers() {
  local stoppers=() servers=()
  while [[ $# -ge 3 ]]; do
    if [[ -n $2 ]]; then
      stop_server "$1" "$2" "$3" &
      stoppers+=("$!") servers+=("$2")
    fi
    shift 3
  done
  [[ ${#stoppers[@]} -eq 0 ]] || wait "${stoppers[@]}" || true
  [[ ${#servers[@]} -eq 0 ]] || wait "${servers[@]}" 2>/dev/null || true
}

# run_foreground NAME URL TIMEOUT CMD...: a server in the foreground of a terminal (A or B):
# its log on screen, ready when URL answers, Ctrl-C stops it and cleans up.
run_foreground() {
  local status=0
  FG_NAME=$1 FG_LOG="$REPRO_LOG_DIR/$1.log"
  local url=$2 timeout=$3
  shift 3
  FG_PID="" FG_TAIL=""
  on_exit '[[ -z $FG_TAIL ]] || kill "$FG_TAIL" 2>/dev/null; [[ -z $FG_PID ]] || stop_server "$FG_NAME" "$FG_PID" "$FG_LOG"'
  start_server "$FG_NAME" "$FG_LOG" "$@"
  FG_PID=$SERVER_PID
  # The log on screen; the tail, too, goes when this script goes.
  with_parent tail -n +1 -f "$FG_LOG" &
  FG_TAIL=$!
  wait_ready "$FG_NAME" "$FG_PID" "$url" "$timeout" "$FG_LOG"
  [[ $FG_NAME != vllm ]] || warm_vllm "$FG_NAME" "$FG_PID" "$FG_LOG"
  echo "$FG_NAME: serving; Ctrl-C stops it"
  await_exit "$FG_PID" || status=$?
  echo "$FG_NAME: exited with status $status" >&2
  exit "$status"
}

# enter_netns ARGS...: a start script re-runs itself inside REPRO_NETNS (a network namespace
# that scripts/nodes.sh made) unless it is there already; its server then binds that
# namespace's own addresses (127.0.0.1 inside it is not this machine's).
enter_netns() {
  [[ -n $REPRO_NETNS ]] || return 0
  [[ $(ip netns identify $$ 2>/dev/null) != "$REPRO_NETNS" ]] || return 0
  [[ -e /var/run/netns/$REPRO_NETNS ]] || die "REPRO_NETNS=$REPRO_NETNS: no such network namespace (scripts/nodes.sh makes it)"
  exec ip netns exec "$REPRO_NETNS" "$0" "$@"
}
