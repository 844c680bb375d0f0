"""Register the three Hudi tables by name: in the AWS Glue Data Catalog (boto3), a local JSON catalog, or nowhere.

The definitions are the ones Hudi's own Glue sync (`AWSGlueCatalogSyncClient`, module hudi-aws) writes, so Athena
reads the tables as Hudi copy-on-write tables. This module picks the backend (`catalog.backend`) and registers the
tables at job start; the parts live beside it:

- `catalog_defs`: the definitions (Spark schema -> Hive columns, TableInput, partition values), no catalog calls;
- `catalog_sync`: what every backend shares: read once, then write only a new partition or a changed definition;
- `catalog_glue`, `catalog_local`: the Glue Data Catalog and the JSON files under `<warehouse>/_catalog`, with
  `register_in_spark` making the local definitions session tables.

`make docs` regenerates the table definitions in docs/reference.md from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streaming.catalog.defs import TableDef, table_def, table_defs
from streaming.catalog.glue import GlueCatalog
from streaming.catalog.local import LocalCatalog, register_in_spark
from streaming.catalog.sync import Catalog, NoCatalog
from streaming.config import ConfigError, JobConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# What other modules import from here (batch, job, docs/design.md's example), wherever it is defined.
__all__ = [
    "Catalog",
    "NoCatalog",
    "TableDef",
    "ensure_catalog",
    "open_catalog",
    "readme_table",
    "register_in_spark",
    "table_def",
]


def open_catalog(config: JobConfig, spark: SparkSession) -> Catalog:
    """The configured catalog (`catalog.backend`)."""
    backend = config.catalog.backend
    if backend == "glue":
        from botocore.exceptions import NoRegionError

        try:
            return GlueCatalog(spark, config.tables.database, config.catalog.region)
        except NoRegionError as exc:
            raise ConfigError("catalog.region must be set (or AWS_REGION) for catalog.backend=glue") from exc
    if backend == "local":
        return LocalCatalog(spark, config.warehouse, config.tables.database)
    if backend == "none":
        return NoCatalog()
    raise ConfigError(f"unknown catalog.backend {backend!r} (glue, local or none)")


def ensure_catalog(spark: SparkSession, config: JobConfig, views: Sequence[TableDef] = ()) -> Catalog:
    """Open the configured catalog and register the three tables and the `views` tables (job start); `none` derives
    nothing."""
    catalog = open_catalog(config, spark)
    if config.catalog.backend != "none":
        catalog.ensure((*table_defs(spark, config), *views))
    return catalog


def readme_table(spark: SparkSession, config: JobConfig) -> str:
    """The table definitions in docs/reference.md: each table's description, columns and partition keys, commented."""
    lines = []
    for table in table_defs(spark, config):
        partitioned = ", ".join(f"`{k} {t}`" for k, t in table.partition_columns)
        head = f"`{table.name}`" + (f", partitioned by {partitioned}" if partitioned else "") + ":"
        lines += [f"{head} {table.description}".rstrip(), ""]
        lines += ["| column | type | comment |", "|---|---|---|"]
        rows = [(name, f"`{hive}`") for name, hive in table.columns]
        rows += [(name, f"`{hive}`, partition key") for name, hive in table.partition_columns]
        lines += [f"| `{name}` | {kind} | {_cell(table.comment(name))} |" for name, kind in rows]
        lines.append("")
    return "\n".join(lines).rstrip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare `|` would end the Markdown cell early
