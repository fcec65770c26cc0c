# Helpers shared by the workspace's scripts. Source it; do not run it.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "error: $*" >&2
  exit 1
}

# Export every knob of defaults.env that the environment does not already set.
load_defaults() {
  local line key value
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    key=${line%%=*}
    value=${line#*=}
    if [[ -z ${!key+x} ]]; then
      export "$key=${value/#\~/$HOME}"
    fi
  done <"$REPO_ROOT/defaults.env"
}

load_defaults
