#!/usr/bin/env bash
# Terminal A: the LMCache MP server in the foreground. Ctrl-C stops it and cleans up.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
enter_netns "$@"
cd "$REPO_ROOT"
require_env

"$REPRO" preflight lmcache
read_command lmcache
run_foreground lmcache "$("$REPRO" url lmcache)/healthcheck" "$REPRO_LMCACHE_READY_TIMEOUT" "${CMD[@]}"
