#!/usr/bin/env bash
# Turn a fresh clone into a working environment (idempotent; a rerun with nothing to do
# takes seconds). Flags: --relock (re-resolve uv.lock), --check (rerun the checks).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# uv: the one on PATH, else a private copy installed from PyPI into the cache.
tools="$REPRO_CACHE_DIR/tools"
if ! command -v uv >/dev/null 2>&1; then
  if [[ ! -x $tools/bin/uv ]]; then
    boot=$(command -v "$REPRO_PYTHON" || command -v python3 || die "no python3 found to install uv with")
    echo "installing uv from PyPI into $tools"
    "$boot" -m venv "$tools" && "$tools/bin/python" -m pip install --quiet uv ||
      die "could not install uv from PyPI; install it yourself (https://docs.astral.sh/uv/) and rerun"
  fi
  export PATH="$tools/bin:$PATH"
fi

# Python 3.11: REPRO_PYTHON if it is 3.11, else whatever 3.11 uv can find.
is_311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
python=$(command -v "$REPRO_PYTHON" || true)
if [[ -z $python ]] || ! is_311 "$python"; then
  python=$(uv python find 3.11 2>/dev/null || true)
fi
[[ -n $python ]] && is_311 "$python" ||
  die "Python 3.11 is required (REPRO_PYTHON=$REPRO_PYTHON is not 3.11 and uv found none); install it (e.g. 'uv python install 3.11') or set REPRO_PYTHON=/path/to/python3.11"

PYTHONPATH="$REPO_ROOT/src" exec "$python" -m reproduce_vllm_lmcache.workspace.bootstrap "$@"
