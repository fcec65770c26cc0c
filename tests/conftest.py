"""Suite-wide: one preload server (scripts/preload.sh) per REPRO_PATCHES mode for every server
the end-to-end tests start, so that each start skips importing torch & co. (as scripts/dev.sh does), and short
answers."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from reproduce_vllm_lmcache import config
from scripted_servers import ScriptedServer

# Tests never write tracked files: what they record (the fault table, results/bugs.json, the
# results index) goes to .repro/test-results/ unless REPRO_TEST_RECORD=1 asks for results/.
RECORD = config.get("REPRO_TEST_RECORD") == "1"
PRISTINE = config.get("REPRO_TEST_PRISTINE") == "1"
if not RECORD:
    TEST_RESULTS = config.ROOT / ".repro" / "test-results"
    shutil.rmtree(TEST_RESULTS, ignore_errors=True)
    TEST_RESULTS.mkdir(parents=True)
    os.environ["REPRO_RESULTS_DIR"] = str(TEST_RESULTS)


# Tokens generated per request in the suite (the recorded runs use the default, 32): the
# verdicts compare outputs token by token either way, and each decode step costs ~0.05 s here.
os.environ.setdefault("REPRO_MAX_TOKENS", "4")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The pristine cases (marker pristine) only when asked for: REPRO_TEST_PRISTINE=1
    (scripts/test.sh --pristine) or a -m expression that names them."""
    if PRISTINE or "pristine" in (config.option.markexpr or ""):
        return
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("pristine") else kept).append(item)
    if deselected:
        items[:] = kept
        config.hook.pytest_deselected(items=deselected)


@pytest.fixture(scope="session", autouse=True)
def preload_server(request):
    wanted = any(item.get_closest_marker("e2e") for item in request.session.items)
    if not wanted or config.get("REPRO_PRELOAD") != "auto":
        yield None
        return
    # One per REPRO_PATCHES mode the run needs: upstream mode's imports the pristine trees (only
    # the pristine cases run servers in that mode).
    modes = ["all", *(["upstream"] if any(item.get_closest_marker("pristine") for item in request.session.items) else [])]
    servers = []
    try:
        for mode in modes:
            env = {**os.environ, "REPRO_LOG_DIR": str(config.ROOT / ".repro/logs/tests"), "REPRO_PATCHES": mode}
            servers.append(ScriptedServer("preload.sh", env))
        for server in servers:
            server.wait_for(r"preload(-upstream)?: serving|already answers", 300)
        yield servers
    finally:
        for server in servers:
            server.interrupt()


def checkout_state() -> str | None:
    """What `git status` and `git diff` say of the checkout (None outside a git checkout)."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=config.ROOT, capture_output=True, text=True, check=True)
        diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=config.ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return status.stdout + hashlib.sha256(diff.stdout).hexdigest()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[CHECKOUT] = checkout_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run fails when it changed a tracked file or left an untracked one (not ignored)."""
    before = session.config.stash.get(CHECKOUT, None)
    after = checkout_state()
    if RECORD or before is None or after == before:
        return
    changed = sorted(set(after.splitlines()[:-1]) ^ set(before.splitlines()[:-1]))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (
        "the test run changed the checkout (tests must not write tracked files; REPRO_TEST_RECORD=1 "
        f"records on purpose): {changed or 'the content of files already modified before the run'}"
    )
    if reporter is not None:
        reporter.write_line(f"FAILED clean-checkout check: {message}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


CHECKOUT = pytest.StashKey[str | None]()
