"""Job settings as data: defaults here, overridden by a TOML file, overridden by command-line flags.

Precedence is flag > file > default. Every key is documented once, on its field below; the files in
`checkpoints_conf/` only set values.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parent.parent / "checkpoints_conf"


@dataclass(frozen=True)
class Tables:
    """Names of the three Hudi tables; each lives at `<warehouse>/<name>`."""

    database: str = "bronze"  # catalog database (Glue Data Catalog in AWS, the local catalog on a laptop)
    encounter: str = "bronze_encounter"  # one row per Encounter id
    ingest_log: str = "bronze_encounter_ingest_log"  # one row per micro-batch that ingested files
    quarantine: str = "bronze_encounter_quarantine"  # one row per record or file that could not become a row


@dataclass(frozen=True)
class LedgerConfig:
    """The file ledger: a second guard, beside Spark's checkpoint, against ingesting a file twice."""

    backend: str = "sqlite"  # "sqlite" (embedded, on local disk) or "dynamodb"
    path: str = ""  # sqlite file; empty means <warehouse>/_ledger/ledger.sqlite3 (warehouse must be local)
    table: str = "bronze_encounter_ledger"  # DynamoDB table name
    region: str = ""  # DynamoDB region; empty: aws.resolve_region (AWS_REGION, AWS_DEFAULT_REGION, profile)


@dataclass(frozen=True)
class SparkConfig:
    """Resources of a locally started Spark; on Glue the worker type decides and these are ignored."""

    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = 4  # few, small micro-batches: many partitions only add tasks
    ui: bool = False
    log_level: str = "WARN"
    conf: Mapping[str, str] = field(default_factory=dict)  # any further spark.* setting
    # Hide JVM start-up noise nobody can act on (lakehouse/log4j2.properties, Hudi JOL probe); --verbose: false.
    quiet: bool = True


@dataclass(frozen=True)
class MetricsConfig:
    """Per-batch metrics for dashboards and alarms."""

    backend: str = "none"  # "cloudwatch" (put_metric_data after every batch) or "none"
    namespace: str = "BronzeEncounter"  # CloudWatch namespace; every metric has the dimension Table=<tables.encounter>
    region: str = ""  # CloudWatch region; empty: aws.resolve_region (AWS_REGION, AWS_DEFAULT_REGION, profile)
    waiting_every_seconds: int = 300  # FilesWaiting/OldestWaitingSeconds at most this often (they list the source)
    # Heartbeat and Blocked every this many seconds, from a timer that runs whatever the batches do: a stream that is
    # up but blocked, or gone, is told by them (metrics.py; the template's alarms).
    heartbeat_seconds: int = 60


@dataclass(frozen=True)
class FhirConfig:
    """Limits and switches for reading FHIR files."""

    max_file_bytes: int = 2 * 1024**3  # a file larger than this (compressed or not) is quarantined whole
    # A single JSON document (resource/Bundle) is read whole up to this; its Python objects take several times
    # as much memory, so it stays far below a Glue worker's (a larger one is quarantined, never parsed).
    max_document_bytes: int = 64 * 1024**2
    max_depth: int = 64  # JSON nesting deeper than this is quarantined (real Encounters nest < 10)
    raw_slice_chars: int = 2000  # how much raw text a quarantine row keeps
    # A version whose event time is more than this many hours after the moment it is read is quarantined
    # (`future_datetime`): trusted, a wrong clock's lastUpdated would outrank every real update until then.
    future_tolerance_hours: int = 24
    keep_resource_json: bool = True  # keep each resource's original JSON in `resource_json`


@dataclass(frozen=True)
class CatalogConfig:
    """Where the three tables are registered by name (database `tables.database`), so SQL engines find them."""

    backend: str = "local"  # "glue" (AWS Glue Data Catalog), "local" (JSON under <warehouse>/_catalog) or "none"
    region: str = ""  # Glue region; empty: aws.resolve_region (AWS_REGION, AWS_DEFAULT_REGION, profile)


@dataclass(frozen=True)
class LayoutConfig:
    """How the tables' data files are sized as a long-running stream adds to them."""

    # Copy-on-write adds a batch's new rows to the newest file of each partition it touches by rewriting that
    # file, until the file reaches this many MiB; then new rows start a new file. So this bounds what a batch
    # rewrites (about one such file per hospital in the batch) however large the table grows. Hudi's default, 100,
    # lets the rewrite grow for months: measured, a batch took ~0.9 s more per MiB of those files (8 hospitals, 2
    # cores), and the ingest log's one-row commit rewrote the whole log. Larger: fewer, bigger files for readers,
    # slower batches (docs/performance.md). 0: every batch writes new files (the job does not compact them).
    small_file_mb: int = 1
    # At most every this many seconds, after a batch that wrote (its files committed), the job clusters bronze
    # (Hudi's clustering, a `replacecommit`): in each hospital with more than one file below `cluster_file_mb`,
    # those files are rewritten into as few files of up to `cluster_file_mb`. The stream's 1 MiB files then do not
    # pile up for readers (Athena pays per file). A file that reached `cluster_file_mb` is not clustered again; an
    # update to it rewrites all of it (copy-on-write), which is why the size stays moderate (docs/performance.md).
    # 0: never.
    cluster_every_seconds: int = 3600
    # The clustering's target file size, and the cap on every bronze file a write makes: a backfill (bulk insert)
    # writes files of up to this many MiB, not one file per hospital of up to Hudi's 120 MB (an update or a move
    # into a file rewrites or reads all of it).
    cluster_file_mb: int = 16
    # At most every this many seconds, after a batch's ledger commit and never in the batch a clustering ran in,
    # the job cleans bronze (deletes file versions older than the 10 retained commits) and archives its timeline.
    # Hudi would clean inside a batch's own commit (every 10th); on the job's clock it stays off the latency path.
    clean_every_seconds: int = 300
    # How many rows bronze is expected to hold (encounters, tombstones included) when grown: the record index gets
    # one file group per RECORD_INDEX_ROWS_PER_FILE_GROUP of them (docs/design.md, "The record index's size").
    # Fixed when the index is built, at the table's first write: a table already written keeps its count.
    expected_rows: int = 2_000_000


@dataclass(frozen=True)
class IngestLogConfig:
    """When the ingest log's rows are written: together, off the batch's latency path (docs/design.md)."""

    # A batch's log row waits in the ledger (committed with the batch's files) and is written with others, in one
    # Hudi commit, once this many batches are waiting or the oldest waited `every_seconds`, when the job stops, and
    # at the next start after a crash. The log therefore lags the table by at most this much; `status` says by how
    # much it does. 1: every batch writes its own row (a Hudi commit of its own, about 0.7 s a batch measured).
    every_batches: int = 10
    # ...or once the oldest waiting row has waited this many seconds (checked after each batch); 0: by count only.
    every_seconds: int = 60


@dataclass(frozen=True)
class ViewsConfig:
    """Which SQL on FHIR ViewDefinitions the job runs; each lands in its own Hudi table `bronze_<view name>`."""

    # Comma-separated: a shipped view by name (`encounter`, `patient`, ...) or the path of a ViewDefinition JSON file.
    # `encounter` (bronze_encounter, the ingest log and the quarantine) is always one of them; the others land in
    # `bronze_<the view's name>` each, in the same batch, committed before bronze_encounter (docs/design.md,
    # "Views besides encounter").
    run: str = "encounter"
    fhir_version: str = "R4"  # the FHIR version the views other than encounter are compiled for (R4 or R5)
    # Comma-separated view names whose tables stay small (reference data; up to about a million rows): Hudi finds a
    # key's stored row by reading the table's keys (its simple index) and keeps no metadata table, which saves a
    # second commit on every write. Every other view's table looks keys up in a record index, as bronze_encounter
    # does, at any size. A table may move between the two (docs/decisions/small-view-tables.md).
    small_tables: str = "patient,practitioner,practitioner_role,organization,location"


@dataclass(frozen=True)
class StatusConfig:
    """When `status` calls the stream BEHIND or STALLED, and how much of the source it lists to tell."""

    # BEHIND: the oldest file waiting (by its modification time) is older than this. 900 s is 30 triggers of 30 s,
    # and the deploy's OldestWaitingThresholdSeconds default.
    behind_seconds: int = 900
    # STALLED: files have waited at least this long and no batch committed for as long (the deploy's StalledMinutes
    # default, 15); also, at once, when the writer lease expired unreleased (its job died) while files wait.
    stalled_seconds: int = 900
    # The listing stops after this many objects (files, folder markers, ignored names), and every count it gives is
    # then marked truncated (a lower bound): one listing costs a ledger lookup per file (DynamoDB: 100 a request).
    max_listed: int = 100_000
    # With this many committed files still in the source, `status` says listing grows: each trigger lists them all
    # again (10,000 cost +4.7 s a trigger); `source_archive` moves them out (docs/design.md, "Exactly once").
    listing_warn_files: int = 10_000


@dataclass(frozen=True)
class JobConfig:
    """Everything one run of the job needs; frozen so no function changes it underneath another."""

    source: str = "data/landing"  # landing prefix: local folder or s3a://bucket/prefix
    warehouse: str = "data/warehouse"  # root of the Hudi tables: local folder or s3a://bucket/prefix
    checkpoint: str = ""  # Spark checkpoint; empty means <warehouse>/_checkpoints/<tables.encounter>
    # Where ingested files are moved once their batch is committed (the file source's cleanSource=archive), kept
    # under their full path: `<source_archive>/<path of the file>`. The prefix then holds only files not yet
    # ingested, so a trigger (and a restart) lists as little after a million files as after ten. Same file system
    # (bucket) as `source`, outside it. Empty: files stay where they land.
    source_archive: str = ""
    trigger_interval: str = "30 seconds"  # processing-time trigger of the continuous stream
    max_files_per_trigger: int = 500  # bounds one micro-batch (and the ledger's batch intent item)
    lease_ttl_seconds: int = 60  # single-writer lease; renewed every third of it, a dead job's expires after it
    lease_wait_seconds: int = 75  # how long a starting job waits for another holder's lease to expire
    # What makes an encounter one row (docs/design.md, "Which key"). FHIR makes Encounter.id unique per server only:
    # "id" (default) keys by the id alone; "meta.source" or "folder" (the first folder under the landing prefix)
    # name the system it came from, kept in `source_system` and part of the key, so two EHRs that both number
    # from 1 do not overwrite each other. Fixed for a table once it has data (a change is refused at start).
    key_scope: str = "id"
    tables: Tables = field(default_factory=Tables)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    fhir: FhirConfig = field(default_factory=FhirConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    ingest_log: IngestLogConfig = field(default_factory=IngestLogConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)

    @property
    def checkpoint_uri(self) -> str:
        return self.checkpoint or join_uri(self.warehouse, "_checkpoints", self.tables.encounter)

    def table_uri(self, name: str) -> str:
        return join_uri(self.warehouse, name)

    @property
    def ledger_path(self) -> str:
        if self.ledger.path:
            return self.ledger.path
        if is_remote(self.warehouse):
            raise ConfigError("ledger.path must be set when the warehouse is not on local disk (SQLite needs it)")
        return str(Path(self.warehouse) / "_ledger" / "ledger.sqlite3")


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type; the message names the key."""


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file:")


S3_SCHEMES = ("s3://", "s3a://", "s3n://")  # Hadoop's connectors name one S3 object in these three ways


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def s3_spelling(uri: str) -> str:
    """`s3://bucket/key` for any S3 scheme (what Athena, hudi-rs and boto3 expect); other URIs unchanged."""
    for alias in S3_SCHEMES[1:]:
        if uri.startswith(alias):
            return "s3://" + uri[len(alias) :]
    return uri


def spelled_like(uri: str, like: str) -> str:
    """`uri` with the S3 scheme `like` uses (s3, s3a and s3n name one object); other URIs unchanged."""
    if is_s3(uri) and is_s3(like):
        return like.split("://", 1)[0] + "://" + uri.split("://", 1)[1]
    return uri


def canonical_uri(uri: str) -> str:
    """One spelling per object: `s3://bucket/key` for every S3 scheme, `file:/path` for a local file."""
    if is_s3(uri):
        return s3_spelling(uri)
    if uri.startswith("file:"):
        return "file:/" + uri[len("file:") :].lstrip("/")
    if uri.startswith("/"):
        return "file:" + uri
    return uri


def canonical_table_uri(config: JobConfig) -> str:
    """The bronze table's location in one spelling: what the ledger scope and the lease are named after."""
    return canonical_uri(config.table_uri(config.tables.encounter)).rstrip("/")


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _local_abspath(uri: str) -> str:
    """Make a local path absolute so Spark executors, checkpoints and the ledger agree on one location."""
    if not uri or is_remote(uri):
        return uri
    if uri.startswith("file:"):
        return uri
    return str(Path(uri).expanduser().resolve())


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _merge(obj: Any, values: Mapping[str, Any], prefix: str) -> Any:
    """Return a copy of dataclass `obj` with nested `values` applied, checking names and types."""
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {prefix}{key}")
        changes[key] = _merged_value(getattr(obj, key), value, prefix, key)
    return dataclasses.replace(obj, **changes)


def _merged_value(current: Any, value: Any, prefix: str, key: str) -> Any:
    """The new value of setting `prefix+key`: a nested table merged, a string map extended, or a checked scalar."""
    if dataclasses.is_dataclass(current):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{prefix}{key} must be a table")
        return _merge(current, value, f"{prefix}{key}.")
    if isinstance(current, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{prefix}{key} must be a table")
        return {**current, **{str(k): str(v) for k, v in value.items()}}
    return _scalar(type(current), value, f"{prefix}{key}")


def _scalar(expected: type, value: Any, name: str) -> Any:
    """`value` as the `expected` scalar type; flags arrive as text, so ints and booleans are parsed from it."""
    if expected is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # flags arrive as text
    elif expected is bool and isinstance(value, str):
        word = value.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        value = word in _TRUE
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {expected.__name__}, got {type(value).__name__}")
    return value


def nest(flat: Mapping[str, Any], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn {"ledger.backend": "x"} into {"ledger": {"backend": "x"}}, inside `into` (settings read from a file) if
    given; None values are 'not given'."""
    nested: dict[str, Any] = {} if into is None else into
    for dotted, value in flat.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def env_file(env: str) -> Path:
    """The settings file of a named environment, e.g. `local` -> checkpoints_conf/local.toml."""
    return CONF_DIR / f"{env}.toml"


def load(file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> JobConfig:
    """Build the config: defaults, then the TOML `file` (if any), then dotted-key `overrides` (flags)."""
    config = JobConfig()
    if file is not None:
        config = _merge(config, _read_toml(Path(file)), "")
    if overrides:
        config = _merge(config, nest(overrides), "")
    config = dataclasses.replace(
        config,
        source=_local_abspath(config.source),
        source_archive=_local_abspath(config.source_archive),
        warehouse=_local_abspath(config.warehouse),
        checkpoint=_local_abspath(config.checkpoint),
        ledger=dataclasses.replace(config.ledger, path=_local_abspath(config.ledger.path)),
    )
    _check_archive(config.source, config.source_archive)
    _check_layout(config.layout)
    _check_status(config.status)
    _check_names(config)
    _check_ranges(config)
    _check_views(config)
    if config.key_scope not in KEY_SCOPES:
        raise ConfigError(f"key_scope must be one of {', '.join(KEY_SCOPES)}, got {config.key_scope!r}")
    local = local_path_of(config.warehouse)
    if local is not None and local.exists() and not local.is_dir():
        raise ConfigError(f"warehouse {config.warehouse} is a file, not a folder: check --warehouse")
    return config


def _read_toml(file: Path) -> dict[str, Any]:
    """A settings file's content; a missing, unreadable or malformed file is a ConfigError naming it."""
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"settings file {file} does not exist: check --config") from None
    except IsADirectoryError:
        raise ConfigError(f"settings file {file} is a folder, not a TOML file: check --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {file} is not valid TOML ({exc}): fix it or check --config") from None
    except OSError as exc:
        raise ConfigError(f"settings file {file} cannot be read ({type(exc).__name__}): check --config") from None


# Settings that count something, and the least each may be: a negative count or an empty batch is a typo.
_MINIMUM: dict[str, int] = {
    "max_files_per_trigger": 1,
    "lease_ttl_seconds": 3,
    "lease_wait_seconds": 0,
    "spark.shuffle_partitions": 1,
    "fhir.max_file_bytes": 1,
    "fhir.max_document_bytes": 1,
    "fhir.max_depth": 1,
    "fhir.raw_slice_chars": 0,
    "fhir.future_tolerance_hours": 0,
    "metrics.waiting_every_seconds": 0,
    "metrics.heartbeat_seconds": 1,
    "layout.cluster_file_mb": 1,
    "layout.expected_rows": 1,
    "layout.clean_every_seconds": 1,
    "ingest_log.every_batches": 1,
    "ingest_log.every_seconds": 0,
}


def _check_ranges(config: JobConfig) -> None:
    for dotted, least in _MINIMUM.items():
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        if value < least:
            raise ConfigError(f"{dotted} must be at least {least}, got {value}")


def local_path_of(uri: str) -> Path | None:
    """The local path a URI names (a plain path or file:), None for a remote one."""
    if not uri or is_remote(uri):
        return None
    return Path(uri[len("file:") :] if uri.startswith("file:") else uri)


def check_source(config: JobConfig) -> None:
    """The source a stream or `status` lists must be there: a local folder that exists, or an S3 prefix."""
    if is_s3(config.source):
        return
    if is_remote(config.source):
        raise ConfigError(f"source {config.source} is not a local folder or an s3:// prefix: check --source")
    local = local_path_of(config.source)
    if local is None or not local.is_dir():
        what = "is not a folder" if local is not None and local.exists() else "does not exist"
        raise ConfigError(f"source {config.source} {what}: check --source (a typo would otherwise ingest nothing)")


KEY_SCOPES = ("id", "meta.source", "folder")


def key_columns(config: JobConfig) -> tuple[str, ...]:
    """The bronze table's record key columns for the configured key scope."""
    return ("encounter_id",) if config.key_scope == "id" else ("source_system", "encounter_id")


# Table and database names as Glue, Athena and Hive accept them (lower case, digits, underscore); they also appear
# in Hudi's procedure calls and the clustering options, whose parsers split on ',' and end strings at a quote.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


def _check_names(config: JobConfig) -> None:
    """Refuse at load what would fail later: a table name a catalog refuses, a quote in the tables' location."""
    for key in ("database", "encounter", "ingest_log", "quarantine"):
        value = getattr(config.tables, key)
        if not _NAME.match(value):
            raise ConfigError(
                f"tables.{key} must be lower-case letters, digits and '_', starting with a letter: got {value!r}"
            )
    for key in ("warehouse", "checkpoint"):
        value = getattr(config, key)
        if "'" in value or "," in value:
            # Hudi's table services take the location inside a quoted SQL string with ','-separated options.
            raise ConfigError(f"{key} must not contain a quote (') or a comma: {value}")


ENCOUNTER_VIEW = "encounter"


def view_entries(config: JobConfig) -> tuple[str, ...]:
    """`views.run` as its entries, in order, without `encounter` (always run) and without repeats."""
    entries = (e.strip() for e in config.views.run.split(","))
    return tuple(dict.fromkeys(e for e in entries if e and e != ENCOUNTER_VIEW))


VIEW_TABLE_PREFIX = "bronze_"  # a view's table is bronze_<the view's name>
VIEW_NAME = re.compile(r"^[a-z][a-z0-9_]{0,100}$")  # what a view's name may be: it names a table


def small_view_tables(config: JobConfig) -> frozenset[str]:
    """`views.small_tables` as view names."""
    return frozenset(n for e in config.views.small_tables.split(",") if (n := e.strip()))


def view_entry_is_file(entry: str) -> bool:
    """A `views.run` entry names a file (a path or a `.json` name), not a shipped view."""
    return entry.endswith(".json") or "/" in entry or "\\" in entry


def view_table_names(config: JobConfig) -> tuple[str, ...]:
    """The tables of the views `views.run` names besides encounter, without compiling them (for `status`): a shipped
    view's name is its entry, a file's is the `name` it holds; a file that cannot be read is left out (the job
    refuses it at its start, naming it)."""
    names = []
    for entry in view_entries(config):
        if not view_entry_is_file(entry):
            names.append(entry)
            continue
        try:
            found = json.loads(Path(entry).read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(found, str) and found:
            names.append(found)
    return tuple(dict.fromkeys(f"{VIEW_TABLE_PREFIX}{name}" for name in names))


def _check_views(config: JobConfig) -> None:
    names = [e.strip() for e in config.views.run.split(",")]
    if ENCOUNTER_VIEW not in names:
        raise ConfigError(
            f"views.run must include {ENCOUNTER_VIEW} (bronze_encounter anchors the batch), got {config.views.run!r}"
        )
    if config.views.fhir_version not in ("R4", "R5"):
        raise ConfigError(f"views.fhir_version must be R4 or R5, got {config.views.fhir_version!r}")
    bad = sorted(n for n in small_view_tables(config) if not VIEW_NAME.match(n) or n == ENCOUNTER_VIEW)
    if bad:
        raise ConfigError(
            f"views.small_tables names views other than {ENCOUNTER_VIEW} (lower-case letters, digits and '_'),"
            f" got {bad}"
        )
    if view_entries(config) and config.key_scope != "id":
        raise ConfigError("views other than encounter need key_scope = id (a view's key is its resource's id)")


def _check_layout(layout: LayoutConfig) -> None:
    if layout.small_file_mb < 0:
        raise ConfigError(f"layout.small_file_mb must be >= 0, got {layout.small_file_mb}")
    if layout.cluster_every_seconds < 0:
        raise ConfigError(f"layout.cluster_every_seconds must be >= 0, got {layout.cluster_every_seconds}")
    if layout.cluster_every_seconds and layout.cluster_file_mb <= layout.small_file_mb:
        # Clustering files into files no larger than the stream's own would only rewrite them.
        raise ConfigError(
            f"layout.cluster_file_mb ({layout.cluster_file_mb}) must be larger than layout.small_file_mb"
            f" ({layout.small_file_mb}) while layout.cluster_every_seconds is set"
        )


def _check_status(status: StatusConfig) -> None:
    for key, value in dataclasses.asdict(status).items():
        if value <= 0:
            raise ConfigError(f"status.{key} must be > 0, got {value}")


def _check_archive(source: str, archive: str) -> None:
    """The archive must be on the source's file system and outside it: the source lists every folder below it."""
    if not archive:
        return
    src, dst = (canonical_uri(u).rstrip("/") + "/" for u in (source, archive))
    if _file_system(src) != _file_system(dst):
        raise ConfigError(f"source_archive must be on the same file system (bucket) as source: {archive}")
    if dst.startswith(src):
        raise ConfigError(f"source_archive must not be inside source (it would be listed again): {archive}")


def _file_system(uri: str) -> str:
    """The file system a canonical URI is on: `s3://bucket/`, `file:` (local disk), `<scheme>://<host>/`."""
    scheme, remote, rest = uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/" if remote else uri.split(":", 1)[0] + ":"
