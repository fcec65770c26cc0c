"""Suite-wide: one preload server (scripts/preload.sh) per REPRO_PATCHES mode for every server
the end-to-end tests start, so that each start skips importing torch & co. (as scripts/dev.sh does), and short
answers."""

from __future__ import annotations

import os

import pytest
from scripted_servers import ScriptedServer

from reproduce_vllm_lmcache import config


# Tokens generated per request in the suite (the recorded runs use the default, 32): the
# verdicts compare outputs token by token either way, and each token costs ~0.1 s on 2 cores.
os.environ.setdefault("REPRO_MAX_TOKENS", "8")


@pytest.fixture(scope="session", autouse=True)
def preload_server(request):
    wanted = any(item.get_closest_marker("e2e") for item in request.session.items)
    if not wanted or config.get("REPRO_PRELOAD") != "auto":
        yield None
        return
    # One per REPRO_PATCHES mode: upstream mode's imports the pristine trees (tests run both).
    servers = []
    try:
        for mode in ("all", "upstream"):
            env = {**os.environ, "REPRO_LOG_DIR": str(config.ROOT / ".repro/logs/tests"), "REPRO_PATCHES": mode}
            servers.append(ScriptedServer("preload.sh", env))
        for server in servers:
            server.wait_for(r"preload(-upstream)?: serving|already answers", 300)
        yield servers
    finally:
        for server in servers:
            server.interrupt()
