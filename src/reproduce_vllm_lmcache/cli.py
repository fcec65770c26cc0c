"""``repro``: the workspace's command line. Each layer brings its own commands
(workspace/cli.py, servers/cli.py, report/cli.py, experiments/cli.py); this module only
assembles them and turns the workspace's errors into one line and an exit status."""

from __future__ import annotations

import argparse
import sys

from reproduce_vllm_lmcache.experiments import cli as experiments_cli
from reproduce_vllm_lmcache.report import cli as report_cli
from reproduce_vllm_lmcache.servers import cli as servers_cli
from reproduce_vllm_lmcache.servers.settings import KnobError, ServerDown
from reproduce_vllm_lmcache.workspace import cli as workspace_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for layer in (workspace_cli, servers_cli, experiments_cli, report_cli):
        layer.register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (KnobError, ServerDown, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # requests is imported only by the commands that talk to a server.
        requests = sys.modules.get("requests")
        if requests is None or not isinstance(exc, requests.RequestException):
            raise
        print(f"error: request failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
