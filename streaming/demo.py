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
    from streaming.job import RunSummary


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


def prepare(workdir: Path, *, files: int, per_file: int, seed: int) -> tuple[GeneratedSet, conf.JobConfig]:
    """Empty `workdir`, generate FHIR files into <workdir>/landing; the local settings with <workdir>/warehouse."""
    from streaming.generate import generate

    work = workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
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
