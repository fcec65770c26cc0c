#!/usr/bin/env bash
# Terminal C: cold and warm prompts against the servers of terminals A and B, with verdicts
# from both servers' metrics. Arguments go to `repro e2e` (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
exec "$REPRO" e2e "$@"
