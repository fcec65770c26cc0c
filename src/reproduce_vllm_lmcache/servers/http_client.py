"""The HTTP client of the workspace (requests): one session per command, never through a proxy
from the environment (every server is on loopback)."""

from __future__ import annotations

import requests


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s
