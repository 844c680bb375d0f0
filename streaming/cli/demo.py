"""The demo: synthetic encounters generated into an emptied work folder, ingested locally, counted per hospital."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from streaming import config as conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from streaming.generate import GeneratedSet
    from streaming.pipeline.job import RunSummary


@dataclass(frozen=True)
class DemoReport:
    """What the demo generated and ingested, for its closing summary."""

    landing: Path
    warehouse: Path
    files_generated: int
    encounters_generated: int
    summary: RunSummary
    table: str
    hospitals: list[tuple[str | None, int]]  # (hospital_name, rows), by name
    paths: dict[str, str]  # what -> where it lives


# Left in the folder the demo works in: the demo empties only a folder that holds this (or nothing at all).
MARKER = ".bronze-encounter-demo"


def prepare(workdir: Path, *, files: int, per_file: int, seed: int) -> tuple[GeneratedSet, conf.JobConfig]:
    """Empty `workdir`, generate FHIR files into <workdir>/landing; the local settings with <workdir>/warehouse.

    A folder holding anything the demo did not make is refused (ConfigError), never emptied: `--workdir .` in a
    checkout would otherwise delete it.
    """
    from streaming.generate import generate

    work = workdir.resolve()
    if work.exists() and (not work.is_dir() or (any(work.iterdir()) and not (work / MARKER).exists())):
        raise conf.ConfigError(
            f"--workdir {workdir} holds files the demo did not make, and the demo empties its folder: give it a new or"
            " empty folder (default work/demo)"
        )
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / MARKER).write_text("made by `bronze-encounter demo`, which empties this folder when it runs again\n")
    landing, warehouse = work / "landing", work / "warehouse"
    generated = generate(landing, files=files, per_file=per_file, seed=seed)
    return generated, conf.load(conf.env_file("local"), {"source": str(landing), "warehouse": str(warehouse)})


def report(spark: SparkSession, config: conf.JobConfig, generated: GeneratedSet, summary: RunSummary) -> DemoReport:
    """Rows per hospital read back from the bronze table, and where the tables and the ledger live."""
    from pyspark.sql import functions as F

    table = config.table_uri(config.tables.encounter)
    bronze = spark.read.format("hudi").load(table)
    per_hospital = bronze.groupBy("hospital_name").agg(F.count(F.lit(1)).alias("rows")).orderBy("hospital_name")
    return DemoReport(
        landing=Path(config.source),
        warehouse=Path(config.warehouse),
        files_generated=len(generated.files),
        encounters_generated=len(generated.encounter_ids),
        summary=summary,
        table=config.tables.encounter,
        hospitals=[(r["hospital_name"], r["rows"]) for r in per_hospital.collect()],
        paths={
            "table": table,
            "ingest log": config.table_uri(config.tables.ingest_log),
            "quarantine": config.table_uri(config.tables.quarantine),
            "ledger": config.ledger_path,
        },
    )
