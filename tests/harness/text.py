"""How the harness names things in assertion messages: a few ids, files or counts, never record contents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def few(items: Iterable[Any], n: int = 5) -> str:
    """The first `n` items (sorted), and how many more there are."""
    items = sorted(items, key=str)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return f"{items[:n]}{more}"
