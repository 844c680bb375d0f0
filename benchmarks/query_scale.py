"""`query` at scale: what a point lookup and a one-hospital count cost on a large bronze table.

The table (`Sizes.query_rows` encounters, 1M by default) is bulk-inserted with the job's own table options
(`benchmarks.peers seed`). Each query then runs twice, each time in a fresh process of its own:

- before: the query path as it was before it streamed (the named columns of the whole table read through hudi-rs
  into one Arrow table, DuckDB over that table, the whole result rendered as text at once);
- after:  `bronze-encounter query --format csv` as it is now (`streaming.ops.query.stream`: filters pushed to hudi-rs,
  tables streamed into DuckDB, the result written batch by batch).

Figures per run: bytes read (the process's read system calls during the query, /proc/self/io `rchar`: Parquet
footers and columns, timeline), beside the table's Parquet bytes; wall seconds of the query; the process's RSS
before the query (interpreter and imports) and its peak; rows and an order-insensitive digest of the CSV (before
and after must agree). A third query, a four-column export of every row, shows memory once the result is large.

    python -m benchmarks.query_scale table --warehouse DIR    # every query, before and after, on a kept table
    python -m benchmarks.query_scale measure --warehouse DIR --mode before|after --sql SQL
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import pyarrow as pa

from streaming import config as conf

if TYPE_CHECKING:
    from benchmarks.scenarios.common import Bench

Figures = dict[str, Any]
MODES = ("before", "after")
# Share of the table's bytes a selective query may read: "a small fraction".
TARGET_SHARE = 0.1


def query_scale(bench: Bench) -> Figures:
    """Build the table, then run each query before and after, each run a fresh process."""
    # Imported here, not above: a measuring process imports this module and must not pay for the rest.
    from benchmarks.scenarios.common import goal, seed_table

    root = bench.fresh("query-scale")
    warehouse = root / "warehouse"
    seeded = seed_table(bench, root, warehouse, bench.sizes.query_rows, seed=51)
    figures = measure_table(warehouse, root)
    figures["table"]["rows"] = seeded["rows"]
    figures["setup_seconds"] = {"generate": seeded["generate_seconds"], "seed": seeded["seed_seconds"]}
    figures["goals"] = [
        goal(f"{case}: share of the table's bytes read", figures["queries"][case]["after"]["share_of_table_bytes"],
             TARGET_SHARE, at_most=True)
        for case in ("point_lookup", "hospital_count")
    ]  # fmt: skip
    return figures


def measure_table(warehouse: Path, logs: Path) -> Figures:
    """Every query on the table at `warehouse`, before and after, each in a process of its own (logs in `logs`)."""
    from benchmarks import procs
    from streaming.ops import query as q

    table = _layout(warehouse / "bronze_encounter")
    config = conf.load(conf.env_file("local"), {"warehouse": str(warehouse)})
    # The hospital with the most rows (the worst one-hospital case) and a key from the middle of the key range.
    counts = q.query(
        config, "SELECT hospital_name AS h, count(*) AS n FROM bronze_encounter GROUP BY 1 ORDER BY 2 DESC"
    )
    hospital = counts.column("h")[0].as_py().replace("'", "''")
    key = q.query(config, "SELECT quantile_disc(encounter_id, 0.5) AS k FROM bronze_encounter").column("k")[0].as_py()
    cases = {
        "point_lookup": f"SELECT resource_json FROM bronze_encounter WHERE encounter_id = '{key}'",
        "hospital_count": f"SELECT count(*) AS n FROM bronze_encounter WHERE hospital_name = '{hospital}'",
        "export": "SELECT encounter_id, status, hospital_name, admission_time FROM bronze_encounter",
    }
    measured: dict[str, Figures] = {}
    for case, sql in cases.items():
        measured[case] = {}
        for mode in MODES:
            argv = procs.python(
                "-m", "benchmarks.query_scale", "measure", "--warehouse", str(warehouse), "--mode", mode, "--sql", sql
            )  # fmt: skip
            _, figures = procs.run(argv, log=logs / f"{case}-{mode}.log").last("measured")
            run = {k: v for k, v in figures.items() if k not in ("event", "at")}
            measured[case][mode] = {**run, "share_of_table_bytes": round(run["bytes_read"] / table["bytes"], 4)}
        before, after = measured[case]["before"], measured[case]["after"]
        measured[case]["same_output"] = (before["rows"], before["digest"]) == (after["rows"], after["digest"])
    return {"table": table, "queries": measured}


def _layout(table_dir: Path) -> Figures:
    """The latest file slices of the table: how many, and their bytes on disk (what a full read reads)."""
    from hudi import HudiTableBuilder

    slices = HudiTableBuilder.from_base_uri(str(table_dir)).build().get_file_slices()
    return {
        "files": len(slices),
        "partitions": len({s.partition_path for s in slices}),
        "bytes": sum(s.total_size_bytes() for s in slices),
    }


# -- one measured query, in a process of its own -------------------------------------------------------------


class _Digest(io.TextIOBase):
    """A text sink that keeps a digest of the lines written, in any order (a query without ORDER BY has none)."""

    def __init__(self) -> None:
        self.total = 0
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.total = (self.total + int.from_bytes(hashlib.sha256(line.encode()).digest()[:8], "big")) % 2**64
        return len(text)

    def hexdigest(self) -> str:
        return f"{self.total:016x}"


def _proc_value(path: str, key: str) -> int:
    """One number from a /proc/self file (`rchar:` in io, `VmRSS:` in status)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"{path} has no {key}")


def _before(config: conf.JobConfig, sql: str, out: io.TextIOBase) -> tuple[int, Figures]:
    """The query path before it streamed: whole named columns into memory, DuckDB over them, the whole text at once."""
    import duckdb
    from hudi import HudiReadOptions

    from streaming.ops import query as q

    named = {n.lower() for n in duckdb.get_table_names(sql, qualified=False)}
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        columns = q.columns_used(con, sql)
        for name, uri in q.table_uris(config).items():
            table = q.open_table(name, uri) if name.lower() in named else None
            if table is None:
                continue
            schema = table.get_schema_with_meta_fields()
            wanted = [f.name for f in schema if columns is None or f.name.lower() in columns] or [q.ROW_COUNT_COLUMN]
            batches = table.read(HudiReadOptions(projection=wanted))
            try:
                arrow = pa.Table.from_batches(batches)
            except pa.ArrowInvalid:  # as it was: file groups may differ in nullability
                arrow = pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")
            con.register(name, arrow)
        result = con.sql(sql).to_arrow_table()
        out.write(_render_before(result))
        return result.num_rows, {}
    finally:
        con.close()


def _render_before(table: pa.Table) -> str:
    """CSV as `query_format.render` made it before it streamed: every row as a Python list first, then one string."""
    from streaming.ops.sql_output import plain

    def text(value: Any) -> str:
        value = plain(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)

    columns = [column.to_pylist() for column in table.columns]
    rows = [[column[i] for column in columns] for i in range(table.num_rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    writer.writerows([[text(value) for value in row] for row in rows])
    return out.getvalue()


def _after(config: conf.JobConfig, sql: str, out: io.TextIOBase) -> tuple[int, Figures]:
    """`bronze-encounter query --format csv` as it is now."""
    from streaming.ops import query as q
    from streaming.ops.sql_output import write

    with q.stream(config, sql) as result:
        written = write(result, result.schema, "csv", cast(TextIO, out))  # a text sink: write() is all it uses
    read = result.reads["bronze_encounter"]
    return written.rows, {"slices": read.slices, "slices_read": read.slices_read, "filters": len(read.filters)}


def measure(warehouse: str, mode: str, sql: str) -> Figures:
    """Run one query the `mode` way: what it read, how long it took, how much memory the process held."""
    import duckdb  # noqa: F401  (imported before the figures start, by both ways alike)
    import hudi  # noqa: F401

    config = conf.load(conf.env_file("local"), {"warehouse": warehouse})
    out = _Digest()
    rss_before = _proc_value("/proc/self/status", "VmRSS:")
    chars = _proc_value("/proc/self/io", "rchar:")
    started = time.perf_counter()
    rows, extra = (_before if mode == "before" else _after)(config, sql, out)
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "rows": rows,
        "digest": out.hexdigest(),
        "seconds": round(seconds, 3),
        "bytes_read": _proc_value("/proc/self/io", "rchar:") - chars,
        "rss_before_query_mb": round(rss_before / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["measure", "table"], help="one query in this process, or every query")
    parser.add_argument("--warehouse", type=Path, required=True, help="the warehouse holding bronze_encounter")
    parser.add_argument("--mode", choices=MODES, help="measure: the query path, before or after it streamed")
    parser.add_argument("--sql", help="measure: the query")
    args = parser.parse_args(argv)
    if args.action == "table":
        figures = measure_table(args.warehouse.resolve(), args.warehouse.resolve().parent)
        print(json.dumps(figures, indent=2))
        return 0
    if not (args.mode and args.sql):
        parser.error("measure needs --mode and --sql")
    figures = measure(str(args.warehouse), args.mode, args.sql)
    print(json.dumps({"event": "measured", "at": time.time(), **figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
