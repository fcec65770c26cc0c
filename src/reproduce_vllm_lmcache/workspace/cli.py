"""``repro`` commands of the workspace layer: the code a result came from, the knobs' reference,
the patch set."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reproduce_vllm_lmcache import config


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """HEAD and edits of a checkout, as one line (changes whenever its code changes). For
    LMCache, the server's code: lmcache/integration/ (the connector) runs inside vLLM."""
    from reproduce_vllm_lmcache.workspace.checkouts import state

    exclude = ("lmcache/integration",) if args.checkout == "LMCache" else ()
    found = state(config.ROOT / args.checkout, exclude)
    print(f"{found['head']} {found['edits_sha256'] or 'clean'}")
    return 0


def cmd_knobs(args: argparse.Namespace) -> int:
    """docs/knobs.md, generated from defaults.env (--check: fail when the file is stale)."""
    text = config.knobs_markdown()
    target = config.ROOT / "docs" / "knobs.md"
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print(f"error: {target.relative_to(config.ROOT)} is not what defaults.env says: run .venv/bin/repro knobs --write")
            return 1
        print(f"{target.relative_to(config.ROOT)} matches defaults.env")
        return 0
    if args.write:
        target.write_text(text)
        print(f"wrote {target.relative_to(config.ROOT)}")
        return 0
    print(text, end="")
    return 0


def cmd_patches(args: argparse.Namespace) -> int:
    """The patch set and each patch's state; ``export NAME``: its upstream-ready report."""
    from reproduce_vllm_lmcache.workspace import export

    if args.action == "series":
        from reproduce_vllm_lmcache.workspace import series

        out = Path(args.out) if args.out else config.ROOT / ".repro" / "upstream-series"
        for path in series.export(out):
            print(f"wrote {path.relative_to(config.ROOT) if path.is_relative_to(config.ROOT) else path}")
        print("apply upstream with: git am <checkout's files> (on the pinned release tag); send with git send-email")
        return 0
    if args.action == "test":
        from reproduce_vllm_lmcache.workspace import upstream_tests

        return upstream_tests.main([args.name] if args.name else [])
    if args.action == "export":
        if not args.name:
            print("usage: repro patches export NAME   (NAME from `repro patches`)")
            return 2
        out = export.export(args.name)
        print(f"wrote {out.relative_to(config.ROOT)}")
        return 0
    print(export.table())
    print(
        "\nREPRO_PATCHES=upstream runs the pristine release plus the patches it keeps; "
        "`repro patches export NAME` writes docs/upstream/NAME.md"
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("fingerprint", help="one line that changes whenever a checkout's code changes")
    p.add_argument("checkout", choices=("LMCache", "vllm"))
    p.set_defaults(func=cmd_fingerprint)
    p = sub.add_parser("knobs", help="every knob as markdown, from defaults.env (docs/knobs.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write docs/knobs.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when docs/knobs.md is stale")
    p.set_defaults(func=cmd_knobs)
    p = sub.add_parser(
        "patches",
        help="the patch set with each patch's state; export NAME: its upstream report; series: git format-patch series; "
        "test [CHECKOUT]: each fix's upstream-style test, failing on the pristine release and passing patched",
    )
    p.add_argument("action", nargs="?", choices=("list", "export", "series", "test"), default="list")
    p.add_argument("--out", help="series: the folder for <checkout>/NNNN-*.patch (default: .repro/upstream-series)")
    p.add_argument(
        "name", nargs="?", help="export: the patch (e.g. 0003-mq-loop-survives-bad-messages); test: LMCache or vllm (default both)"
    )
    p.set_defaults(func=cmd_patches)
