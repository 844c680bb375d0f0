"""The README's layout table names every module of the package, so a new engineer finds each one."""

from __future__ import annotations

import re
from pathlib import Path

from streaming import generated

PACKAGE = Path(__file__).resolve().parent.parent / "streaming"


def _named() -> set[str]:
    """`package/module.py` paths the layout table names (a row's folder, then its modules)."""
    text = generated.README.read_text()
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for row in layout.splitlines():
        if not row.startswith("| `streaming/"):
            continue
        cell = row.split("|")[1]
        paths = re.findall(r"`([a-z0-9_/]+(?:\.(?:py|properties))?)`", cell)
        folder = paths[0].removeprefix("streaming/") if paths[0].endswith("/") else ""
        named |= {folder + p.removeprefix("streaming/") for p in paths if not p.endswith("/")}
    return named


def test_layout_lists_every_module() -> None:
    modules = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*")
        if p.suffix in (".py", ".properties")
        and p.name not in ("__init__.py", "__main__.py")
        and not p.name.startswith("_")
    }
    named = _named()
    assert modules - named == set(), "modules missing from the README layout table"
    assert named - modules == set(), "the README layout table names modules that do not exist"
