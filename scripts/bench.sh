#!/usr/bin/env bash
# The bench sweep: cold vs warm TTFT per prompt length (REPRO_BENCH_PROMPT_TOKENS) and LMCache
# chunk size (REPRO_BENCH_CHUNK_SIZES), REPRO_BENCH_REPEATS fresh prompts per point, plus plain
# vLLM (no connector) as the cold baseline and vLLM's own prefix cache (APC) as the warm one; each
# LMCache point with the machine's floor and its warm TTFT over APC's. LMCache and vLLM
# restart for every chunk size; a chunk below REPRO_BLOCK_SIZE runs with vLLM blocks of its size.
# Writes results/runs/<UTC>-bench/bench.json and PNG plots.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight bench # every knob, before any server starts

export REPRO_MAX_MODEL_LEN=$REPRO_BENCH_MAX_MODEL_LEN
new_run bench

# sweep_point NAME: start vLLM with the knobs in force, measure every prompt length, stop it.
sweep_point() {
  up_vllm "$REPRO_LOG_DIR/vllm-$1.log"
  run_client "$REPRO" bench --run-dir "$run_dir" --configuration "$1" --vllm-ready-s "$READY_S" \
    ${LMCACHE_LOG:+--lmcache-log "$LMCACHE_LOG"}
  down_vllm
}

REPRO_CONNECTOR=0 LMCACHE_LOG="" sweep_point no-lmcache
# vLLM's own prefix cache, same lengths and block size: the warm TTFT LMCache is compared with.
REPRO_CONNECTOR=0 REPRO_PREFIX_CACHING=1 LMCACHE_LOG="" sweep_point apc
block=$REPRO_BLOCK_SIZE
for chunk in ${REPRO_BENCH_CHUNK_SIZES//,/ }; do
  # A chunk smaller than vLLM's block needs smaller blocks (whole blocks per chunk).
  export REPRO_CHUNK_SIZE=$chunk REPRO_CONNECTOR=1 REPRO_BLOCK_SIZE=$((chunk < block ? chunk : block))
  echo "=== chunk size $chunk, vLLM block size $REPRO_BLOCK_SIZE"
  up_lmcache "$REPRO_LOG_DIR/lmcache-chunk$chunk.log"
  sweep_point "chunk$chunk"
  down_lmcache
done
"$REPRO" bench-report "$run_dir"
