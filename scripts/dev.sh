#!/usr/bin/env bash
# The edit-rerun-verdict loop: your working trees of vllm/ and LMCache/ (B) against the state
# before your edit (A: both checkouts at REPRO_DEV_BASE, by default HEAD, i.e. the pinned release
# plus the workspace's patches plus your commits), measured side by side in one interleaved
# A/B (scripts/ab.sh). Commit (or stash) a state to make it the next "before".
# Everything it starts, it stops; nothing is kept up between reruns.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
[[ $# -eq 0 ]] || die "usage: scripts/dev.sh (no arguments; knobs REPRO_DEV_BASE and REPRO_AB_*, see defaults.env)"

edited=$(git -C LMCache status --porcelain --untracked-files=no; git -C vllm status --porcelain --untracked-files=no)
if [[ -z $edited ]]; then
  echo "dev: no edit in vllm/ or LMCache/ against the last commit: this run is an A/A (both arms the same code)"
fi
exec "$REPO_ROOT/scripts/ab.sh" --label dev --a "@$REPRO_DEV_BASE" --b tree
