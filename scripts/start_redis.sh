#!/usr/bin/env bash
# Terminal A': the Redis server for LMCache's L2 (REPRO_L2=redis) in the foreground, on loopback,
# its own port and folder, nothing persisted. Ctrl-C stops it. Start it before start_lmcache.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
enter_netns "$@"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight redis
read_command redis
mkdir -p "$REPRO_REDIS_DIR"
run_foreground redis "$("$REPRO" url redis)" 30 "${CMD[@]}"
