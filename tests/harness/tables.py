"""The three Hudi tables of a warehouse as the tests read them: rows, timeline files, commits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streaming import config as conf
from streaming.lakehouse.hudi import HudiWriter, TableSpec, encounter_table, ingest_log_table, quarantine_table


def tables(warehouse: Path) -> dict[str, TableSpec]:
    config = conf.load(None, {"warehouse": str(warehouse)})
    return {
        "bronze": encounter_table(config),
        "log": ingest_log_table(config),
        "quarantine": quarantine_table(config),
    }


def read_rows(spark: Any, spec: TableSpec, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Snapshot rows of a Hudi table (only `columns`); a table never written reads as empty."""
    if not (Path(spec.uri) / ".hoodie" / "hoodie.properties").exists():
        return []
    df = spark.read.format("hudi").load(spec.uri).select(*columns)
    return [row.asDict(recursive=True) for row in df.collect()]


def timeline(spec: TableSpec) -> list[str]:
    """The table's timeline files (instants and their states), sorted; a changed table changes this list."""
    folder = Path(spec.uri) / ".hoodie"
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name[0].isdigit()) if folder.exists() else []


def left_inflight(warehouse: Path) -> dict[str, int]:
    """Per table, how many instants a crash left requested/inflight (read from the files, like
    HudiWriter.inflight): tells which write a kill interrupted."""
    found = {}
    for name, spec in tables(warehouse).items():
        names = timeline(spec)
        done = {n.split(".")[0] for n in names if n.endswith((".commit", ".deltacommit", ".replacecommit"))}
        done |= {n.split(".")[0] for n in names if n.endswith((".rollback", ".clean"))}
        pending = {n.split(".")[0] for n in names if n.endswith((".inflight", ".requested"))} - done
        if pending:
            found[name] = len(pending)
    return found


def bronze_instants(spark: Any, warehouse: Path) -> list[str]:
    return sorted(c.instant for c in HudiWriter(spark).commits(tables(warehouse)["bronze"], newest=10_000))
