#!/usr/bin/env bash
# Prometheus next to servers that are already running (scripts/start_lmcache.sh, start_vllm.sh,
# or any script's): the same config as scripts/soak.sh's, scraping both servers' /metrics on the
# ports of the knobs, on REPRO_HOST:REPRO_PROMETHEUS_PORT, in the foreground. Prints its URL and
# the soak's queries (docs/soak.md); Ctrl-C stops it and removes its data folder
# (REPRO_OBSERVE_KEEP_DATA=1 keeps it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" soak check --observe

OBS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/repro-observe.XXXXXX")
OBS_PID=""
on_exit '[[ -z $OBS_PID ]] || stop_server prometheus "$OBS_PID" "$OBS_DIR/prometheus.log"; if [[ $REPRO_OBSERVE_KEEP_DATA == 1 ]]; then echo "observe: data kept in $OBS_DIR"; else rm -rf -- "$OBS_DIR"; fi'
read_argv "$REPRO" soak prometheus --dir "$OBS_DIR"
start_server prometheus "$OBS_DIR/prometheus.log" "${CMD[@]}"
OBS_PID=$SERVER_PID
url="http://$REPRO_HOST:$REPRO_PROMETHEUS_PORT"
wait_ready prometheus "$OBS_PID" "$url/-/ready" 60 "$OBS_DIR/prometheus.log"
echo "observe: Prometheus at $url (targets: $url/targets), scraping vLLM $("$REPRO" url vllm)/metrics and LMCache $("$REPRO" url lmcache)/metrics every ${REPRO_PROMETHEUS_SCRAPE_S} s"
echo "observe: queries (paste into $url/graph, or curl '$url/api/v1/query?query=...'):"
"$REPRO" soak queries | sed 's/^/  /'
echo "observe: Ctrl-C stops it"
await_exit "$OBS_PID" || true
