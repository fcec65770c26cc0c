#!/usr/bin/env bash
# The A/B's calibration, recorded: REPRO_CALIBRATE_SESSIONS A/As (the same code in both arms)
# and as many A/Bs of a planted slowdown (arm B: HEAD plus one line, time.sleep of
# REPRO_CALIBRATE_SLEEP_S in LMCache's retrieve handler; undone at the end, however the script
# ends), each with the A/B's default knobs, on servers started once per kind. Writes
# results/runs/<UTC>-calibrate/calibration.md (false verdicts, detections, what the sleep adds,
# smallest detectable effect per metric) with both A/Bs in its runs/ folder.
# Needs LMCache/ without edits (commit or stash them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight ab
new_run calibrate '"$REPRO" ab unplant'
export REPRO_RESULTS_DIR=$run_dir # the two A/Bs nest in this run's folder
export REPRO_AB_SESSIONS=$REPRO_CALIBRATE_SESSIONS

echo "=== A/A: $REPRO_CALIBRATE_SESSIONS A/Bs of HEAD against HEAD"
scripts/ab.sh --label aa --a @HEAD --b @HEAD
"$REPRO" ab plant --seconds "$REPRO_CALIBRATE_SLEEP_S"
echo "=== planted: $REPRO_CALIBRATE_SESSIONS A/Bs of HEAD against HEAD + time.sleep($REPRO_CALIBRATE_SLEEP_S)"
scripts/ab.sh --label planted --a @HEAD --b tree
"$REPRO" ab unplant
"$REPRO" ab calibration "$run_dir" --seconds "$REPRO_CALIBRATE_SLEEP_S"
