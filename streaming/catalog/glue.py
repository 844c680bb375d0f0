"""The AWS Glue Data Catalog backend: the catalog's store calls through boto3 (moto locally, via AWS_ENDPOINT_URL)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from streaming.adapters import aws
from streaming.catalog.sync import CatalogError, KeptCatalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

MAX_PARTITIONS_PER_CALL = 100  # BatchCreatePartition's limit


class GlueCatalog(KeptCatalog):
    """The AWS Glue Data Catalog, through boto3 (moto locally, via AWS_ENDPOINT_URL)."""

    def __init__(self, spark: SparkSession, database: str, region: str = "") -> None:
        super().__init__(spark, database)
        self.glue = aws.client("glue", region)

    def _call(self, operation: str, table: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.glue, operation)(**kwargs)
        except self.glue.exceptions.EntityNotFoundException:
            raise
        except self.glue.exceptions.AlreadyExistsException:
            raise
        except Exception as exc:
            target = f"{self.database}.{table}" if table else self.database
            raise CatalogError(f"glue {operation} on {target} failed: {type(exc).__name__}") from exc

    def _create_database(self) -> None:
        try:
            self._call("get_database", "", Name=self.database)
        except self.glue.exceptions.EntityNotFoundException:
            try:
                self._call(
                    "create_database",
                    "",
                    DatabaseInput={"Name": self.database, "Description": "bronze layer (created by bronze-encounter)"},
                )
                log.info("catalog: glue database %s created", self.database)
            except self.glue.exceptions.AlreadyExistsException:
                pass  # created meanwhile: fine

    def _read(self, name: str) -> tuple[dict[str, Any] | None, set[tuple[str, ...]]]:
        try:
            stored = self._call("get_table", name, DatabaseName=self.database, Name=name)["Table"]
        except self.glue.exceptions.EntityNotFoundException:
            return None, set()
        partitions: set[tuple[str, ...]] = set()
        token = ""
        while True:
            page = self._call(
                "get_partitions",
                name,
                DatabaseName=self.database,
                TableName=name,
                ExcludeColumnSchema=True,
                **({"NextToken": token} if token else {}),
            )
            partitions |= {tuple(p["Values"]) for p in page.get("Partitions", [])}
            token = page.get("NextToken", "")
            if not token:
                return stored, partitions

    def _create(self, table_in: dict[str, Any]) -> None:
        try:
            self._call("create_table", table_in["Name"], DatabaseName=self.database, TableInput=table_in)
        except self.glue.exceptions.AlreadyExistsException:  # created meanwhile: make it ours
            self._update(table_in)

    def _update(self, table_in: dict[str, Any]) -> None:
        # Glue archives the previous definition as a table version (kept: a schema history; rare, never per commit).
        self._call("update_table", table_in["Name"], DatabaseName=self.database, TableInput=table_in)

    def _add_partitions(self, name: str, inputs: list[dict[str, Any]]) -> None:
        for start in range(0, len(inputs), MAX_PARTITIONS_PER_CALL):
            chunk = inputs[start : start + MAX_PARTITIONS_PER_CALL]
            answer = self._call(
                "batch_create_partition", name, DatabaseName=self.database, TableName=name, PartitionInputList=chunk
            )
            codes = {e.get("ErrorDetail", {}).get("ErrorCode", "") for e in answer.get("Errors", [])}
            if codes - {"AlreadyExistsException"}:  # already there (another run added it) is what we wanted
                raise CatalogError(
                    f"glue batch_create_partition on {self.database}.{name} failed: {', '.join(sorted(codes))}"
                )
