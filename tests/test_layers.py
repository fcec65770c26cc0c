"""The package's shape: every module sits in a layer, and a lower layer never imports a higher
one (docs/layout.md). Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

from reproduce_vllm_lmcache.config import ROOT

PACKAGE = "reproduce_vllm_lmcache"
SOURCE = ROOT / "src" / PACKAGE
# Lowest first: config (the knobs) under everything, the top-level command line over everything.
ORDER = ("config", "knobs", "workspace", "servers", "report", "experiments", "cli")


def layer(dotted: str) -> str:
    """The layer of a module named relative to the package (e.g. servers.settings -> servers)."""
    return dotted.split(".")[0]


def imported(path: Path, source: Path = SOURCE) -> list[tuple[int, str]]:
    """(line, module relative to the package) of every import of the package's own modules."""
    own = path.relative_to(source).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(own[: len(own) - node.level]) + ([node.module] if node.module else [])
                names = [".".join(base + [a.name]) if not node.module else ".".join(base) for a in node.names]
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                rest = node.module[len(PACKAGE) + 1 :]
                names = [f"{rest}.{a.name}" if rest else a.name for a in node.names]
            else:
                continue
            found += [(node.lineno, n) for n in names if n]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name[len(PACKAGE) + 1 :]) for a in node.names if a.name.startswith(PACKAGE + ".")]
    return sorted(found)


def modules(source: Path = SOURCE) -> list[Path]:
    return sorted(p for p in source.rglob("*.py") if p.name != "__init__.py")


def violations(source: Path) -> list[str]:
    wrong = []
    for path in modules(source):
        mine = ORDER.index(layer(".".join(path.relative_to(source).with_suffix("").parts)))
        for line, target in imported(path, source):
            if ORDER.index(layer(target)) > mine:
                wrong.append(f"{path.relative_to(source)}:{line} imports {target}")
    return wrong


def test_every_module_sits_in_a_layer() -> None:
    stray = [str(p.relative_to(SOURCE)) for p in modules() if layer(".".join(p.relative_to(SOURCE).with_suffix("").parts)) not in ORDER]
    assert not stray, f"modules outside the layers {ORDER}: {stray}"


def test_each_layer_has_one_command_line_module() -> None:
    for name in ("workspace", "servers", "report", "experiments"):
        assert (SOURCE / name / "cli.py").is_file(), f"{name}/cli.py missing"


def test_no_module_imports_a_higher_layer() -> None:
    wrong = violations(SOURCE)
    assert not wrong, "a lower layer imports a higher one:\n" + "\n".join(wrong)


def test_the_check_sees_a_violation(tmp_path) -> None:
    # The rule itself can fail: a servers module importing an experiment (absolute or relative).
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "bad.py").write_text(
        "from reproduce_vllm_lmcache.experiments import client\n"
        "def f():\n    from ..experiments.bench import measure\n"
        "from .settings import Settings\n"
    )
    assert violations(tmp_path) == [
        "servers/bad.py:1 imports experiments.client",
        "servers/bad.py:3 imports experiments.bench",
    ]
