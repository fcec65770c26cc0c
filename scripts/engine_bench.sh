#!/usr/bin/env bash
# `lmcache bench engine` (LMCache's own workload tool) against the workspace's servers: the
# long-doc-qa and multi-round-chat workloads, with LMCache and with plain vLLM. Records each
# JSON summary under results/runs/<UTC>-engine-bench/ and prints them side by side.
# Knobs: REPRO_ENGINE_BENCH_* (see defaults.env).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

new_run engine-bench
docs=$REPRO_ENGINE_BENCH_DOCS doc_tokens=$REPRO_ENGINE_BENCH_DOC_TOKENS

# workload CONFIGURATION NAME ARGS...: one workload against the running vLLM.
workload() {
  local out="$run_dir/$1-$2"
  echo "=== $2 against $1"
  mkdir -p "$out"
  LMCACHE_DISABLE_BANNER=1 "$REPO_ROOT/.venv/bin/lmcache" bench engine --no-interactive -q --json --no-csv \
    --engine-url "$("$REPRO" url vllm)" --workload "$2" --output-dir "$out" --seed 42 "${@:3}" \
    >"$out/bench.log" 2>&1 || { tail -n 30 "$out/bench.log" >&2; die "lmcache bench engine $2 failed (log: $out/bench.log)"; }
}

# configuration NAME CONNECTOR: restart vLLM so, run both workloads.
configuration() {
  [[ ,$REPRO_ENGINE_BENCH_CONFIGURATIONS, == *,$1,* ]] || return 0
  export REPRO_CONNECTOR=$2
  up_vllm "$REPRO_LOG_DIR/vllm-$1.log"
  # The document count is set exactly: volume x tokens-per-GB / document length = docs.
  workload "$1" long-doc-qa --kv-cache-volume "$docs" --tokens-per-gb-kvcache "$doc_tokens" \
    --ldqa-document-length "$doc_tokens" --ldqa-query-per-document "$REPRO_ENGINE_BENCH_QUERIES" \
    --ldqa-num-inflight-requests 1 --ldqa-max-output-length "$REPRO_MAX_TOKENS"
  workload "$1" multi-round-chat --kv-cache-volume "$docs" --tokens-per-gb-kvcache "$doc_tokens" \
    --mrc-shared-prompt-length 500 --mrc-chat-history-length "$((doc_tokens - 500))" --mrc-user-input-length 50 \
    --mrc-duration "$REPRO_ENGINE_BENCH_CHAT_SECONDS" --mrc-qps 0.2 --mrc-output-length "$REPRO_MAX_TOKENS"
  down_vllm
}

up_lmcache "$REPRO_LOG_DIR/lmcache.log"
configuration lmcache 1
configuration no-lmcache 0
down_lmcache
"$REPRO" engine-bench-report "$run_dir"
