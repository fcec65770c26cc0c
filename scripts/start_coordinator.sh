#!/usr/bin/env bash
# LMCache's fleet coordinator in the foreground (scripts/nodes.sh starts it; or its own terminal).
# LMCache servers started with REPRO_COORDINATOR_URL pointing at it register, send heartbeats and
# report their cache events; `lmcache query coordinator --url URL --api instances|directory|usage`
# shows what it knows. Ctrl-C stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
enter_netns "$@"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight coordinator
read_command coordinator
run_foreground coordinator "$("$REPRO" url coordinator)/healthz" "$REPRO_LMCACHE_READY_TIMEOUT" "${CMD[@]}"
