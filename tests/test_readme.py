"""The README's layout table names every module of the package, so a new engineer finds each one."""

from __future__ import annotations

import re
from pathlib import Path

from streaming import readme

PACKAGE = Path(__file__).resolve().parent.parent / "streaming"


def test_layout_lists_every_module() -> None:
    text = readme.README.read_text()
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for row in layout.splitlines():
        cell = row.split("|")[1] if row.startswith("| `streaming/") else ""
        named |= set(re.findall(r"`(?:streaming/)?([a-z0-9_]+\.(?:py|properties))`", cell))
    modules = {p.name for p in PACKAGE.iterdir() if p.suffix in (".py", ".properties") and p.name != "__init__.py"}
    assert modules - named == set(), "modules missing from the README layout table"
    assert named - modules == set(), "the README layout table names modules that do not exist"
