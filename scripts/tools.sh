#!/usr/bin/env bash
# The workspace's tools beside LMCache's own, on the same servers and the same requests
# (docs/tiers.md): the eviction stream through a small L1 (`repro eviction`: hits predicted by the
# workspace's model and observed) with LMCache logging its lookup hashes, then
# `lmcache tool cache-simulator` replaying those lookups; `repro status` next to
# `lmcache describe kvcache` / `describe engine`; `repro lmcache-clear` next to
# `lmcache kvcache clear`, each timed. Writes results/runs/<UTC>-tools/ (one .txt per command).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env

new_run tools
hashes="$run_dir/lookup-hashes"
mkdir -p "$hashes"
export REPRO_L1_SIZE_GB=$REPRO_EVICTION_L1_SIZE_GB REPRO_EVICTION_POLICY=LRU
export REPRO_LMCACHE_EXTRA_ARGS="$REPRO_LMCACHE_EXTRA_ARGS --lookup-hash-log-dir $hashes"
up_lmcache "$REPRO_LOG_DIR/lmcache.log"
up_vllm "$REPRO_LOG_DIR/vllm.log"
"$REPRO" eviction --run-dir "$run_dir"

# side NAME CMD...: run CMD; the command line, its output and its wall time into NAME.txt and on screen.
side() {
  local file="$run_dir/$1.txt" TIMEFORMAT="took %R s"
  shift
  echo "\$ ${*#"$REPO_ROOT/"}" >"$file"
  { time "$@" >>"$file" 2>&1; } 2>>"$file" || echo "(exit status $?)" >>"$file"
  cat "$file"
  echo
}
lmcache_url=$("$REPRO" url lmcache)
vllm_url=$("$REPRO" url vllm)
LMCACHE_CLI="$REPO_ROOT/.venv/bin/lmcache"
export LMCACHE_DISABLE_BANNER=1
side repro-status "$REPRO" status
side lmcache-describe-kvcache "$LMCACHE_CLI" describe kvcache --url "$lmcache_url"
side lmcache-describe-engine "$LMCACHE_CLI" describe engine --url "$vllm_url"
# The simulator cannot size a chunk from the lookup log's dtype ('torch.float32' is unknown to it):
# the bytes per chunk the eviction run measured after its first store.
chunk_bytes=$("$REPO_ROOT/.venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["chunk_bytes"])' \
  "$run_dir/eviction-LRU.json")
side lmcache-cache-simulator "$LMCACHE_CLI" tool cache-simulator simulate -i "$hashes" \
  --cache-capacity-gib "$REPRO_EVICTION_L1_SIZE_GB" --kv-bytes-per-chunk "$chunk_bytes" -o "$run_dir/cache-simulator.png"
side repro-lmcache-clear "$REPRO" lmcache-clear
side lmcache-kvcache-clear "$LMCACHE_CLI" kvcache clear --url "$lmcache_url"
