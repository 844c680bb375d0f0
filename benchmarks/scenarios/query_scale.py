"""query_scale: `query` on a large table, a point lookup and a one-hospital count, the streamed query path against
the one before it (benchmarks/query_scale.py).
"""

from __future__ import annotations

from benchmarks.scenarios.common import Bench, Figures


def query_scale(bench: Bench) -> Figures:
    """`query` on a large table: pushed-down filters and streamed results against a whole read (query_scale.py)."""
    from benchmarks import query_scale

    return query_scale.query_scale(bench)
