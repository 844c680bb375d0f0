"""The Hudi adapter: table definitions, writes that carry the batch key, and reading it back from the timeline."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streaming.bronze import columns
from streaming.bronze.columns import TableDoc
from streaming.config import ConfigError, JobConfig, key_columns
from streaming.lakehouse import hadoop

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Write options starting with `hoodie.datasource.write.commitmeta.key.prefix` (default "_") are copied into the
# commit's extraMetadata; these keys tie a commit to the micro-batch that made it.
# The table services the job runs on its own clock, and the completed timeline action each leaves.
CLUSTERING, CLEAN = "clustering", "clean"
_SERVICE_ACTIONS = {CLUSTERING: ".replacecommit", CLEAN: ".clean"}
BATCH_KEY = "_bronze_batch_key"
BATCH_STATS = "_bronze_batch_stats"
LOG_BATCHES = "_bronze_log_batches"  # an ingest-log commit: how many batches' rows it wrote

# Options every table shares: copy-on-write, table version 6 so Athena, Hudi 0.x readers and hudi-rs can read it.
COMMON_OPTIONS: dict[str, str] = {
    "hoodie.datasource.write.table.type": "COPY_ON_WRITE",
    "hoodie.write.table.version": "6",
    "hoodie.datasource.write.operation": "upsert",
    "hoodie.datasource.write.hive_style_partitioning": "true",
    "hoodie.datasource.write.partitionpath.urlencode": "true",
    # Column statistics in the metadata table serve Spark data skipping, which the bronze readers (Athena,
    # hudi-rs) do not use; measured: each upsert ~15% faster without them.
    "hoodie.metadata.index.column.stats.enable": "false",
    # Hudi tries to clean (delete file versions older than the 10 retained commits) after every commit. Copy-on-write
    # leaves a replaced version behind nearly every batch, so every batch paid a clean: its plan, three timeline
    # instants and a metadata-table commit. Every 10th commit keeps at most 20 commits' versions on disk instead of
    # 11; measured, small upserts after 15 commits: p50 2.71 s -> 2.03 s (docs/performance.md).
    "hoodie.clean.max.commits": "10",
    # No Hudi bloom filter in the Parquet footers: only a BLOOM index reads it, and bronze looks keys up in the record
    # index, the small tables with the simple index (their keys). At Hudi's default size it was ~431 KB per file:
    # a one-row ingest-log file 429 KiB -> 8 KiB.
    "hoodie.parquet.bloom.filter.enabled": "false",
    # Hudi 1.0.2's row writer (a backfill's bulk insert, clustering) ignores that switch and always builds a filter
    # of this type and size: a SIMPLE one for one key, 20 bytes. Measured on a 30k-row bulk insert: footers 39% ->
    # 1.4% of the bytes, 302 -> 187 bytes a row; the row writer off drops the key too but took 10-60% longer.
    "hoodie.bloom.index.filter.type": "SIMPLE",
    "hoodie.index.bloom.num_entries": "1",
    "hoodie.index.bloom.fpp": "0.5",
    # No fixed hoodie.*.shuffle.parallelism: Hudi then takes the input's partition count, which follows the
    # cluster (spark.sql.shuffle.partitions after newest_versions' aggregation; AQE shrinks it for small batches).
}

# The ingest log and quarantine stay small and unpartitioned: a metadata table (a second Hudi table written on
# every commit) saves them no listing, and measured, a log write takes 0.55 s without it instead of 0.9 s.
SMALL_TABLE_OPTIONS: dict[str, str] = {"hoodie.metadata.enable": "false"}


def small_table_index(partitioned: bool) -> dict[str, str]:
    """A small table's index (config `views.small_tables`): no metadata table; an upsert reads the table's keys (all
    partitions' when partitioned, so a row whose partition changes moves) instead of looking them up in a record
    index, which costs a metadata-table commit on every write (docs/decisions/small-view-tables.md)."""
    return {
        "hoodie.metadata.enable": "false",
        "hoodie.metadata.record.index.enable": "false",
        "hoodie.index.type": "GLOBAL_SIMPLE" if partitioned else "SIMPLE",
        "hoodie.simple.index.update.partition.path": "true",
    }


# A write of records whose keys the table cannot hold yet. Its rows go to one task per partition path, so a
# hospital starts as one file, as an upsert would lay it out; without the repartition each of the batch's Spark
# partitions would write its own small file into every hospital's folder.
BULK_INSERT_OPTIONS: dict[str, str] = {
    "hoodie.datasource.write.operation": "bulk_insert",
    "hoodie.bulkinsert.sort.mode": "PARTITION_PATH_REPARTITION",
}

# Reads that look keys up: the record index names their files (Hudi's defaults in 1.0.2, stated so a change of
# default cannot turn a key lookup into a read of every file unnoticed).
_KEY_LOOKUP_OPTIONS = {"hoodie.metadata.enable": "true", "hoodie.enable.data.skipping": "true"}
# Keys of one lookup, at most: they travel in the query plan as literals.
LOOKUP_KEYS = 100_000

_COMPLETED = (".commit", ".deltacommit", ".replacecommit")
_PENDING_CLUSTERING = (".replacecommit.requested", ".replacecommit.inflight")


@dataclass(frozen=True)
class TableSpec:
    """One Hudi table: where it lives and how its records are keyed, ordered and partitioned."""

    name: str
    uri: str
    record_key: str
    precombine: str
    partition: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    doc: TableDoc | None = None  # the description and column meanings the catalog registers

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(self.record_key.split(","))

    def write_options(self) -> dict[str, str]:
        if not self.partition:
            keygen = "org.apache.hudi.keygen.NonpartitionedKeyGenerator"
        elif len(self.key_columns) > 1:  # a record key of several fields (config.key_scope)
            keygen = "org.apache.hudi.keygen.ComplexKeyGenerator"
        else:
            keygen = "org.apache.hudi.keygen.SimpleKeyGenerator"
        return {
            **COMMON_OPTIONS,
            "hoodie.table.name": self.name,
            "hoodie.datasource.write.recordkey.field": self.record_key,
            "hoodie.datasource.write.precombine.field": self.precombine,
            "hoodie.datasource.write.partitionpath.field": self.partition,
            "hoodie.datasource.write.keygenerator.class": keygen,
            **self.options,
        }


def _sized(config: JobConfig) -> dict[str, str]:
    """File sizing every table shares: below this size a file takes a batch's new rows (by being rewritten)."""
    return {"hoodie.parquet.small.file.limit": str(config.layout.small_file_mb * 2**20)}


# The record index's sizing rule (docs/design.md, "The record index's size"): one file group per this many rows.
RECORD_INDEX_ROWS_PER_FILE_GROUP = 1_000_000


def record_index_file_groups(expected_rows: int) -> int:
    """The record index's file-group count for a table expected to hold `expected_rows`: one per million, >= 1."""
    return max(1, math.ceil(expected_rows / RECORD_INDEX_ROWS_PER_FILE_GROUP))


def clustering_options(config: JobConfig) -> dict[str, str]:
    """How a bronze clustering plan picks and sizes files (see LayoutConfig.cluster_every_seconds)."""
    limit = str(config.layout.cluster_file_mb * 2**20)
    return {
        # Candidates and output share one size: a file that reached it is done, so a row is rewritten by clustering
        # only while its hospital's files are still small.
        "hoodie.clustering.plan.strategy.small.file.limit": limit,
        "hoodie.clustering.plan.strategy.target.file.max.bytes": limit,
        # Every hospital in each clustering (Hudi's default, 30 groups, would leave the rest for later runs).
        "hoodie.clustering.plan.strategy.max.num.groups": "100000",
    }


def encounter_table(config: JobConfig) -> TableSpec:
    """bronze_encounter: one row per Encounter id, newest version by precombine_ts, one partition per hospital."""
    groups = record_index_file_groups(config.layout.expected_rows)
    return TableSpec(
        name=config.tables.encounter,
        uri=config.table_uri(config.tables.encounter),
        record_key=",".join(key_columns(config)),
        precombine="precombine_ts",
        partition="hospital_partition",
        doc=columns.ENCOUNTER,
        options={
            # Event-time ordering: an older version (lower precombine_ts) arriving late never replaces a newer
            # one; the 0.x default payload would let a replayed old batch win.
            "hoodie.datasource.write.payload.class": "org.apache.hudi.common.model.DefaultHoodieRecordPayload",
            # A global index with partition-path update: an encounter whose hospital changes moves, it is not
            # kept twice (a partition-scoped index would keep the old copy, apache/hudi#19593). The record index
            # (key -> file, kept in the metadata table) looks up only the batch's keys; GLOBAL_SIMPLE read every
            # key of the table on each upsert, so an upsert cost more the larger the table grew.
            "hoodie.index.type": "RECORD_INDEX",
            "hoodie.metadata.record.index.enable": "true",
            "hoodie.record.index.update.partition.path": "true",
            # ordering.newest_versions leaves one version per key, picked deterministically: Hudi's own
            # pre-combine (a shuffle that breaks ties in arrival order) has nothing left to do.
            "hoodie.combine.before.upsert": "false",
            # The record index's file groups, fixed when the index is built (Hudi's own estimate counts the rows
            # there at that moment: none for a new table, so its minimum, 10): from the rows the table will hold.
            "hoodie.metadata.record.index.min.filegroup.count": str(groups),
            "hoodie.metadata.record.index.max.filegroup.count": str(groups),
            # No file above the clustering's target size, a backfill's bulk insert included.
            "hoodie.parquet.max.file.size": str(config.layout.cluster_file_mb * 2**20),
            # Cleaning and archiving run on the job's own clock after a batch's ledger commit (HudiWriter.clean,
            # LayoutConfig.clean_every_seconds), not inside whichever batch's commit Hudi picks.
            "hoodie.clean.automatic": "false",
            "hoodie.archive.automatic": "false",
            **_sized(config),
        },
    )


def ingest_log_table(config: JobConfig) -> TableSpec:
    """bronze_encounter_ingest_log: one row per micro-batch that ingested files, keyed by its batch key."""
    return TableSpec(
        name=config.tables.ingest_log,
        uri=config.table_uri(config.tables.ingest_log),
        record_key="batch_key",
        precombine="ended_at",
        doc=columns.INGEST_LOG,
        options={**SMALL_TABLE_OPTIONS, **_sized(config)},
    )


def quarantine_table(config: JobConfig) -> TableSpec:
    """bronze_encounter_quarantine: one row per rejected record or file, keyed by (file, position)."""
    return TableSpec(
        name=config.tables.quarantine,
        uri=config.table_uri(config.tables.quarantine),
        record_key="quarantine_id",
        precombine="quarantined_at",
        doc=columns.QUARANTINE,
        options={**SMALL_TABLE_OPTIONS, **_sized(config)},
    )


@dataclass(frozen=True)
class Commit:
    """A completed Hudi commit as the timeline records it."""

    instant: str
    extra: Mapping[str, str]
    inserts: int
    updates: int
    deletes: int
    # Relative partition paths the commit wrote (keys of partitionToWriteStats, as the folders are named, e.g.
    # `hospital_partition=St. Mary%27s`); ("",) for an unpartitioned table. The catalog registers new ones.
    partitions: tuple[str, ...] = ()
    operation: str = ""  # Hudi's operationType, lower case: upsert, bulk_insert, delete...
    files: tuple[str, ...] = ()  # the data files it wrote, relative to the table's folder

    @property
    def batch_key(self) -> str | None:
        return self.extra.get(BATCH_KEY)


class HudiWriter:
    """Writes DataFrames to Hudi tables and reads their timelines through Spark's Hadoop file system."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        # Tables seen with a completed commit: a table never loses its last one, so each batch need not list
        # `.hoodie` (and read a commit) again to learn it. Stale only if the table is deleted under a running job,
        # and then the batch upserts, which is correct, only slower.
        self._committed: set[str] = set()
        # (service, table uri) -> wall time of the service's last run on the table (see `overdue`)
        self._served_at: dict[tuple[str, str], float] = {}

    def upsert(self, spec: TableSpec, df: DataFrame, commit_meta: Mapping[str, str]) -> None:
        """Upsert `df`; each `commit_meta` key must start with '_' so Hudi copies it into the commit."""
        self._write(spec, df, commit_meta, {})

    def bulk_insert(self, spec: TableSpec, df: DataFrame, commit_meta: Mapping[str, str]) -> None:
        """Write `df` as new records, without looking any key up: only for keys the table cannot hold yet.

        A table without a completed commit holds no key, and the caller's rows carry each key once; there the
        index lookup and the upsert's workload profile are pure cost (measured: docs/performance.md).
        """
        self._write(spec, df, commit_meta, BULK_INSERT_OPTIONS)

    def _write(
        self, spec: TableSpec, df: DataFrame, commit_meta: Mapping[str, str], options: Mapping[str, str]
    ) -> None:
        bad = [k for k in commit_meta if not k.startswith("_")]
        if bad:
            raise ValueError(f"commit metadata keys must start with '_': {bad}")
        df.write.format("hudi").options(**self.options(spec, options), **commit_meta).mode("append").save(spec.uri)

    def options(self, spec: TableSpec, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A write's options: the table's, sized to this cluster where Hudi's default is a fixed number."""
        cores = str(self.spark.sparkContext.defaultParallelism)
        return {
            # Default 60: two of its shuffles ran 60 tasks each on every upsert, 290 of a small batch's 435 tasks
            # on 2 cores. The cluster's parallelism follows its size, on a laptop and on Glue alike.
            "hoodie.global.index.reconcile.parallelism": cores,
            **spec.write_options(),
            **(extra or {}),
        }

    def kept_older(self, spec: TableSpec, commit: Commit, rows: DataFrame, given: int) -> int:
        """How many of `rows` (one per key with its precombine_ts, just upserted by `commit`) the table did not take:
        it kept a newer version.

        Hudi writes no count of them, so the files the commit wrote are read (key, ordering and commit time only):
        a key whose record there is from an earlier commit, or has another ordering value than the row, was kept
        over it. (A late version that moves hospital is merged into the stored one, which Hudi writes again under
        this commit: only its ordering value tells.) A commit that inserted every row it was written with
        (tombstones too) kept none, since a kept-over row is never an insert: nothing is read then (docs/design.md,
        the counts). `given` is that number of rows or more (counted before they were made one per key): only an
        insert count that reaches it skips the read.
        """
        from pyspark.sql import functions as F

        if not commit.files or commit.inserts >= given:
            return 0
        base = spec.uri.rstrip("/")
        keys = list(spec.key_columns)
        stored = self.spark.read.parquet(*[f"{base}/{f}" for f in commit.files]).select(
            *keys, F.col(spec.precombine).alias("_stored_ts"), "_hoodie_commit_time"
        )
        ours = rows.select(*keys, F.col(spec.precombine).alias("_our_ts"))
        joined = ours.join(stored, keys)
        kept = (F.col("_hoodie_commit_time") != commit.instant) | (F.col("_stored_ts") != F.col("_our_ts"))
        return joined.where(kept).count()

    def check_key(self, spec: TableSpec) -> None:
        """Refuse to write a table whose record key is not the one configured (a changed key_scope)."""
        text = hadoop.read_text(self.spark, f"{spec.uri.rstrip('/')}/.hoodie/hoodie.properties")
        if text is None:
            return
        found = next(
            (
                line.split("=", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("hoodie.table.recordkey.fields=")
            ),
            None,
        )
        if found is not None and found != spec.record_key:
            raise ConfigError(
                f"{spec.name} is keyed by {found}; this key_scope keys it by {spec.record_key}: a table's key is fixed"
                " once it has data (set key_scope back, or write a new table)"
            )

    def read(self, spec: TableSpec) -> DataFrame:
        """The table's latest snapshot."""
        return self.spark.read.format("hudi").load(spec.uri)

    def read_keys(self, spec: TableSpec, keys: DataFrame) -> DataFrame:
        """The stored rows whose record key is in `keys` (rows holding the key columns), from the files that hold them.

        A one-field key is looked up in the record index (Hudi's data skipping on an IN filter of the key): only the
        files it names are read. Hudi 1.0.2 prunes by a one-field key only, so a key of several fields
        (config.key_scope), or more than LOOKUP_KEYS keys, reads every file and joins.
        """
        from pyspark.sql import functions as F

        columns = list(spec.key_columns)
        wanted = keys.select(*columns).distinct()
        table = self.spark.read.format("hudi").options(**_KEY_LOOKUP_OPTIONS).load(spec.uri)
        if len(columns) == 1:
            values = [row[0] for row in wanted.limit(LOOKUP_KEYS + 1).collect()]
            if len(values) <= LOOKUP_KEYS:
                return table.where(F.col(columns[0]).isin(*values) if values else F.lit(False))
        return table.join(wanted, columns)

    def delete(self, spec: TableSpec, keys: DataFrame) -> None:
        """Delete the records whose keys (record key, ordering and partition columns) are in `keys`."""
        options = self.options(spec, {"hoodie.datasource.write.operation": "delete"})
        keys.write.format("hudi").options(**options).mode("append").save(spec.uri)

    def exists(self, spec: TableSpec) -> bool:
        """Whether Hudi has written the table yet (its `.hoodie/hoodie.properties`)."""
        return hadoop.exists(self.spark, f"{spec.uri.rstrip('/')}/.hoodie/hoodie.properties")

    def has_commits(self, spec: TableSpec) -> bool:
        """Whether the table has a completed commit: a crashed first write leaves the table without one."""
        if spec.uri not in self._committed and next(self.commits(spec, newest=1), None) is not None:
            self._committed.add(spec.uri)
        return spec.uri in self._committed

    def _timeline(self, spec: TableSpec) -> tuple[Any, Any, dict[str, float]]:
        """The file system, the `.hoodie` folder and its files' modification times (epoch s) by name, newest first.

        Table version 6 keeps its active timeline as `.hoodie/<instant>.<action>` files; none: no table yet.
        """
        fs, timeline = hadoop.filesystem(self.spark, f"{spec.uri.rstrip('/')}/.hoodie")
        statuses = fs.listStatus(timeline) if fs.exists(timeline) else []
        files = {s.getPath().getName(): s.getModificationTime() / 1000 for s in statuses}
        return fs, timeline, dict(sorted(files.items(), reverse=True))

    def commits(self, spec: TableSpec, newest: int = 50) -> Iterator[Commit]:
        """The newest completed commits of a table, newest first, read lazily."""
        fs, timeline, names = self._timeline(spec)
        completed = [n for n in names if n.endswith(_COMPLETED)][:newest]
        jvm = hadoop.jvm(self.spark)
        for name in completed:
            stream = fs.open(jvm.org.apache.hadoop.fs.Path(timeline, name))
            try:
                text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
            finally:
                stream.close()
            yield _parse_commit(name.split(".")[0], text)

    def find_commit(self, spec: TableSpec, batch_key: str, newest: int = 50) -> Commit | None:
        """The completed commit a batch made, if any: how a restart tells 'written' from 'not written'."""
        return next((c for c in self.commits(spec, newest) if c.batch_key == batch_key), None)

    def pending_clustering(self, spec: TableSpec) -> list[str]:
        """Clustering plans (`replacecommit`s; the job writes no other kind) requested or inflight, not completed."""
        _, _, names = self._timeline(spec)
        return [i for i in self._pending(names) if any(f"{i}{suffix}" in names for suffix in _PENDING_CLUSTERING)]

    def cluster(self, spec: TableSpec, plan: Mapping[str, str], *, schedule: bool) -> list[str]:
        """Run the table's pending clustering plans, after planning one more if `schedule`; the instants completed.

        A job killed while clustering leaves its plan pending, and Hudi then refuses every upsert into a file group
        the plan holds: recovery runs such plans (`schedule=False`) before the stream starts. Hudi's procedure runs
        with the table's own write options, so its metadata writer keeps the record index up to date. An attempt
        counts for `overdue` whether it succeeds or not: a failing one is tried again at the next due time.
        """
        options = {**self.options(spec), **plan}
        if "'" in spec.uri or any("," in v or "'" in v for v in options.values()):
            raise ValueError(f"{spec.name}: a quote or ',' in its location or write options: not for run_clustering")
        # An empty value (an unpartitioned table's partition field) is left out: the procedure splits `k=v` on
        # '=' and fails on a pair without a value; unset is what the table's key generator expects there.
        listed = ",".join(f"{k}={v}" for k, v in options.items() if v)
        op = "scheduleAndExecute" if schedule else "execute"
        self._served_at[CLUSTERING, spec.uri] = time.time()
        rows = self.spark.sql(f"CALL run_clustering(path => '{spec.uri}', op => '{op}', options => '{listed}')")
        return [str(r["timestamp"]) for r in rows.collect()]

    def rollback_clustering(self, spec: TableSpec) -> list[str]:
        """Take back every pending clustering plan, so upserts into its file groups are accepted again.

        A plan only requested wrote nothing yet: its request is removed. An inflight one may have written files:
        Hudi's own rollback removes them (its procedure takes a catalog table, so the path is registered under a
        private name first; the 1.0.2 procedure fails when given only a path).
        """
        fs, timeline, names = self._timeline(spec)
        pending = [i for i in self._pending(names) if any(f"{i}{suffix}" in names for suffix in _PENDING_CLUSTERING)]
        jvm = hadoop.jvm(self.spark)
        for instant in pending:
            if f"{instant}.replacecommit.inflight" in names:
                alias = "bronze_upkeep_" + hashlib.sha256(spec.uri.encode()).hexdigest()[:12]
                self.spark.sql(f"CREATE TABLE IF NOT EXISTS {alias} USING hudi LOCATION '{spec.uri}'")
                self.spark.sql(
                    f"CALL run_rollback_inflight_tableservice(table => '{alias}', pending_instant => '{instant}',"
                    " delete_request_instant_file => true)"
                ).collect()
            else:
                fs.delete(jvm.org.apache.hadoop.fs.Path(timeline, f"{instant}.replacecommit.requested"), False)
        return pending

    def overdue(self, spec: TableSpec, service: str, every_seconds: float) -> float | None:
        """How long ago `service` (CLUSTERING or CLEAN) fell due on the table, `every_seconds` after its last run
        (first asked: its newest on the active timeline); None if not due, or if the table has no commit yet.

        With none on the active timeline (none yet, or archived), the oldest commit there stands in for it: a new
        table is first served `every_seconds` after its first commit, and a job restarted often does not serve it
        on every start.
        """
        if not self.has_commits(spec):  # nothing to serve (a first batch that only quarantined, say)
            return None
        if (service, spec.uri) not in self._served_at:
            _, _, files = self._timeline(spec)
            served = [t for name, t in files.items() if name.endswith(_SERVICE_ACTIONS[service])]
            committed = [t for name, t in files.items() if name.endswith(_COMPLETED)]
            self._served_at[service, spec.uri] = max(served) if served else min(committed, default=time.time())
        late = time.time() - self._served_at[service, spec.uri] - every_seconds
        return late if late >= 0 else None

    def clean(self, spec: TableSpec) -> int:
        """Clean the file versions older than the retained commits, then archive the timeline; files deleted.

        Hudi's write client with the table's own write options, so its metadata table is kept up to date; a clean a
        crash left pending is finished first. An attempt counts for `overdue` whether it succeeds or not.
        """
        jvm = hadoop.jvm(self.spark)
        props = jvm.java.util.Properties()
        for key, value in self.options(spec).items():
            props.setProperty(key, value)
        config = jvm.org.apache.hudi.config.HoodieWriteConfig.newBuilder().withPath(spec.uri).withProperties(props)
        context = jvm.org.apache.hudi.client.common.HoodieSparkEngineContext(self.spark.sparkContext._jsc)
        self._served_at[CLEAN, spec.uri] = time.time()
        client = jvm.org.apache.hudi.client.SparkRDDWriteClient(context, config.build())
        try:
            cleaned = client.clean()
            client.archive()
        finally:
            client.close()
        return 0 if cleaned is None else int(cleaned.getTotalFilesDeleted())

    def inflight(self, spec: TableSpec) -> list[str]:
        """Instants requested or inflight but not completed (a crashed write leaves one)."""
        _, _, names = self._timeline(spec)
        return self._pending(names)

    @staticmethod
    def _pending(names: Iterable[str]) -> list[str]:
        """The instants among timeline file names that were requested or inflight and never ended."""
        names = list(names)
        done = {n.split(".")[0] for n in names if n.endswith((*_COMPLETED, ".rollback", ".clean"))}
        pending = {n.split(".")[0] for n in names if n.endswith((".inflight", ".requested")) and n[0].isdigit()}
        return sorted(pending - done)


def _parse_commit(instant: str, text: str) -> Commit:
    body = json.loads(text) if text.strip() else {}
    written = body.get("partitionToWriteStats") or {}
    stats = [s for per_partition in written.values() for s in per_partition]
    return Commit(
        instant=instant,
        extra={str(k): str(v) for k, v in (body.get("extraMetadata") or {}).items() if k != "schema"},
        inserts=sum(int(s.get("numInserts", 0)) for s in stats),
        updates=sum(int(s.get("numUpdateWrites", 0)) for s in stats),
        deletes=sum(int(s.get("numDeletes", 0)) for s in stats),
        partitions=tuple(sorted(str(k) for k in written)),
        operation=str(body.get("operationType") or "").lower(),
        files=tuple(sorted(str(s["path"]) for s in stats if s.get("path"))),
    )
