#!/usr/bin/env bash
# Soak: REPRO_SOAK_MINUTES of mixed `lmcache bench engine` load (multi-round chat and long-document
# QA at once, several users each) against vLLM (--max-num-seqs REPRO_SOAK_MAX_NUM_SEQS) and an
# LMCache server whose small L1 (REPRO_SOAK_L1_SIZE_GB) evicts all the time; the LMCache server is
# SIGKILLed and restarted half-way. A Prometheus on loopback scrapes both servers' /metrics; the
# script samples what /metrics does not show (RSS of every server process, /dev/shm). Then a few
# answers are compared with a plain vLLM's, the lookup logs go through LMCache's cache simulator,
# and `repro soak report` judges the run (docs/soak.md).
# Writes results/runs/<UTC>-soak/: soak.json (verdicts), soak-*.png, prometheus-series.json, ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight soak # every knob and Prometheus, before any server starts

export REPRO_L1_SIZE_GB=$REPRO_SOAK_L1_SIZE_GB REPRO_MAX_NUM_SEQS=$REPRO_SOAK_MAX_NUM_SEQS
PROM_PID="" PROM_LOG="" SAMPLER_PID="" SAMPLER_LOG="" LOOP_PIDS=""

# stop_helpers: the bench loops (their process groups), the sampler and Prometheus, by PID.
stop_helpers() {
  local pid
  for pid in $LOOP_PIDS; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  LOOP_PIDS=""
  [[ -z $SAMPLER_PID ]] || stop_server sampler "$SAMPLER_PID" "$SAMPLER_LOG" 10
  [[ -z $PROM_PID ]] || stop_server prometheus "$PROM_PID" "$PROM_LOG" 30
  SAMPLER_PID="" PROM_PID=""
}
new_run soak stop_helpers
[[ $run_dir == /* ]] || run_dir="$REPO_ROOT/$run_dir" # the servers' working folder may be another
export REPRO_LMCACHE_EXTRA_ARGS="${REPRO_LMCACHE_EXTRA_ARGS:+$REPRO_LMCACHE_EXTRA_ARGS }--lookup-hash-log-dir $run_dir/lookup-hashes"
load_s=$(awk -v m="$REPRO_SOAK_MINUTES" 'BEGIN { printf "%d", m * 60 }')

# bench_loop WORKLOAD DEADLINE: rounds of one `lmcache bench engine` workload until DEADLINE
# (epoch s), each round in bench/WORKLOAD/round-NNN (per-request CSV). A round with failed
# requests exits 1; the loop goes on (the failures are in its CSV). No round starts with less
# than 20 s left; a chat round lasts at most the time left, and a document round, which has no
# duration of its own, starts only when at least its fastest round's time is left (else it would
# run past the deadline alone; the fastest, as the round cut by the restart is slow).
bench_loop() {
  local kind=$1 deadline=$2 round=0 left out status took fastest=0 began
  local url model
  url=$("$REPRO" url vllm)
  model=$(curl -sf "$url/v1/models" | "$REPO_ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')
  while :; do
    left=$((deadline - $(date +%s)))
    ((left >= 20)) && [[ $kind == chat || $left -ge $fastest ]] || break
    began=$(date +%s)
    round=$((round + 1))
    out="$run_dir/bench/$kind/round-$(printf %03d "$round")"
    mkdir -p "$out"
    local args=()
    if [[ $kind == chat ]]; then
      # --tokens-per-gb-kvcache = one user's tokens, so --kv-cache-volume is the user count.
      args=(--workload multi-round-chat --kv-cache-volume "$REPRO_SOAK_CHAT_USERS"
        --tokens-per-gb-kvcache "$((REPRO_SOAK_CHAT_SHARED_TOKENS + REPRO_SOAK_CHAT_HISTORY_TOKENS))"
        --mrc-shared-prompt-length "$REPRO_SOAK_CHAT_SHARED_TOKENS" --mrc-chat-history-length "$REPRO_SOAK_CHAT_HISTORY_TOKENS"
        --mrc-user-input-length "$REPRO_SOAK_CHAT_INPUT_TOKENS" --mrc-output-length "$REPRO_SOAK_OUTPUT_TOKENS"
        --mrc-qps "$REPRO_SOAK_CHAT_QPS" --mrc-duration "$((left < REPRO_SOAK_CHAT_ROUND_S ? left : REPRO_SOAK_CHAT_ROUND_S))")
    else
      args=(--workload long-doc-qa --no-warmup --kv-cache-volume "$REPRO_SOAK_DOCS" --tokens-per-gb-kvcache "$REPRO_SOAK_DOC_TOKENS"
        --ldqa-document-length "$REPRO_SOAK_DOC_TOKENS" --ldqa-query-per-document "$REPRO_SOAK_DOC_QUERIES"
        --ldqa-num-inflight-requests "$REPRO_SOAK_DOC_USERS" --ldqa-max-output-length "$REPRO_SOAK_OUTPUT_TOKENS")
    fi
    status=0
    LMCACHE_DISABLE_BANNER=1 "$REPO_ROOT/.venv/bin/lmcache" bench engine --no-interactive -q --json --engine-url "$url" \
      --model "$model" --seed "$round" --output-dir "$out" "${args[@]}" >"$out/bench.log" 2>&1 || status=$?
    took=$(($(date +%s) - began))
    ((fastest > 0 && fastest <= took)) || fastest=$took
    echo "$kind round $round: exit $status after $took s"
  done
}

# start_loop WORKLOAD DEADLINE: bench_loop in the background, in its own process group.
start_loop() {
  set -m
  bench_loop "$1" "$2" >"$REPRO_LOG_DIR/bench-$1.log" 2>&1 </dev/null &
  LOOP_PIDS="$LOOP_PIDS $!"
  set +m
  echo "soak: $1 load started, pid $!, log $REPRO_LOG_DIR/bench-$1.log"
}

# shellcheck disable=SC2086
loops_running() { [[ -n $LOOP_PIDS ]] && is_running $LOOP_PIDS; }

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
up_vllm "$REPRO_LOG_DIR/vllm.log"
pids_file="$run_dir/server-pids"
printf 'lmcache %s\nvllm %s\n' "$LMCACHE_PID" "$VLLM_PID" >"$pids_file"

read_argv "$REPRO" soak prometheus --dir "$run_dir/prometheus"
PROM_LOG="$REPRO_LOG_DIR/prometheus.log"
start_server prometheus "$PROM_LOG" "${CMD[@]}"
PROM_PID=$SERVER_PID
wait_ready prometheus "$PROM_PID" "http://$REPRO_HOST:$REPRO_PROMETHEUS_PORT/-/ready" 60 "$PROM_LOG"
SAMPLER_LOG="$REPRO_LOG_DIR/sampler.log"
start_server sampler "$SAMPLER_LOG" "$REPRO" soak sample --pids "$pids_file" --out "$run_dir/samples.jsonl"
SAMPLER_PID=$SERVER_PID

load_started=$(now)
deadline=$(($(date +%s) + load_s))
echo "soak: $((load_s / 60)) min $((load_s % 60)) s of load until $(date -d "@$deadline" +%H:%M:%S 2>/dev/null || echo "$deadline"); Prometheus at http://$REPRO_HOST:$REPRO_PROMETHEUS_PORT"
start_loop chat "$deadline"
start_loop docs "$deadline"

# Half-way: SIGKILL the LMCache server (its whole process group), start it again.
mid=$((deadline - load_s + load_s / 2))
while (($(date +%s) < mid)); do
  loops_running || { echo "soak: the load stopped before half-way (logs: $REPRO_LOG_DIR/bench-*.log)" >&2; exit 1; }
  sleep 1
done
killed_at=$(now)
echo "soak: killing the LMCache server (pid $LMCACHE_PID) with SIGKILL"
kill -KILL -- "-$LMCACHE_PID" 2>/dev/null || kill -KILL "$LMCACHE_PID"
down_lmcache
up_lmcache "$REPRO_LOG_DIR/lmcache-restarted.log"
ready_at=$READY_AT
echo "lmcache $LMCACHE_PID" >>"$pids_file"

# The rest of the load; a bench that hangs past the deadline + 5 min is stopped.
while loops_running && (($(date +%s) < deadline + 300)); do sleep 2; done
loops_running && echo "soak: the load did not end 5 min after its deadline; stopping it"
for pid in $LOOP_PIDS; do kill -TERM -- "-$pid" 2>/dev/null || true; done
LOOP_PIDS=""
load_ended=$(now)
printf '{"load_started": %s, "killed_at": %s, "ready_at": %s, "grace_s": %s, "load_ended": %s}\n' \
  "$load_started" "$killed_at" "$ready_at" "$REPRO_SOAK_GRACE_S" "$load_ended" >"$run_dir/soak-times.json"

echo "=== sample answers on the soak's vLLM (each prompt twice, the second a hit)"
"$REPRO" soak answers --run-dir "$run_dir" --name lmcache || echo "soak: the sample answers failed"
"$REPRO" soak collect --run-dir "$run_dir" --start "$load_started" --end "$(now)" --kv-bytes-out "$run_dir/kv-bytes-per-chunk.txt"
stop_helpers
[[ $REPRO_SOAK_KEEP_PROMETHEUS_DATA == 1 ]] || rm -rf -- "$run_dir/prometheus/data"
down_vllm
down_lmcache

echo "=== the same answers on plain vLLM (no connector)"
REPRO_CONNECTOR=0 up_vllm "$REPRO_LOG_DIR/vllm-baseline.log"
REPRO_CONNECTOR=0 "$REPRO" soak answers --run-dir "$run_dir" --name baseline || echo "soak: the baseline answers failed"
down_vllm

echo "=== LMCache's cache simulator over the soak's lookups"
(cd "$run_dir" && LMCACHE_DISABLE_BANNER=1 "$REPO_ROOT/.venv/bin/lmcache" tool cache-simulator sweep -i lookup-hashes \
  --kv-bytes-per-chunk "$(cat kv-bytes-per-chunk.txt)" --min-capacity-gib 0.02 --max-capacity-gib 8 --points 24 \
  -o simulator-sweep.png) >"$run_dir/sweep.txt" 2>"$REPRO_LOG_DIR/sweep.log" || echo "soak: the cache simulator failed (log: $REPRO_LOG_DIR/sweep.log)"
gzip -9 "$run_dir"/lookup-hashes/*.jsonl 2>/dev/null || true

"$REPRO" soak report "$run_dir"
