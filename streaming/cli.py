"""`bronze-encounter`, the command line: parses arguments, sets up output, and hands each command to its module."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming import config as conf
from streaming.ledger import LeaseHeld, LedgerUnavailable
from streaming.storage import FileReadError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from streaming.batch import BatchResult
    from streaming.job import RunSummary

EXIT_CONFIG = 2
EXIT_LEASE = 3
EXIT_LEDGER = 4
EXIT_FILE = 5  # a listed file exists but cannot be read (permissions, KMS, Glacier): nothing of it was committed

DESCRIPTION = """\
Ingest FHIR Encounter files into the Apache Hudi table bronze_encounter, exactly once.

Files landing under a folder or an S3 prefix (single resources, Bundles, NDJSON, gzip; FHIR R4 or R5) become one
row per Encounter. Every micro-batch is recorded in bronze_encounter_ingest_log; input that cannot become a row
goes to bronze_encounter_quarantine with a reason. The same job runs as an AWS Glue streaming job and on a laptop.
"""

EPILOG = """\
examples:
  bronze-encounter demo                                   # generate encounters, ingest them locally, show a summary
  bronze-encounter run --source landing/ --warehouse wh/ --once
  bronze-encounter status --warehouse wh/
  bronze-encounter query --warehouse wh/ "SELECT hospital_name, count(*) FROM bronze_encounter GROUP BY 1"

settings: command-line flag > settings file (--config, else checkpoints_conf/<env>.toml) > defaults; every key is
documented in streaming/config.py.
exit codes: 0 done, 1 failed, 2 bad configuration or query, 3 another instance holds the writer lease,
4 the ledger is unreachable, 5 a listed file cannot be read (the message names it).
"""

# Flags that map onto a dotted settings key; anything else goes through --set.
SETTING_FLAGS = (
    "source",
    "warehouse",
    "checkpoint",
    "trigger_interval",
    "max_files_per_trigger",
    "ledger.backend",
    "ledger.table",
    "ledger.path",
)


def _settings_parent() -> argparse.ArgumentParser:
    """Settings flags shared by every command that reads or writes the tables: same names, same precedence."""
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parent.add_argument_group("settings (flag > settings file > default)")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file (TOML) to read instead of checkpoints_conf/<env>.toml; keys are documented in "
        "streaming/config.py (default: none, use --env). e.g. --config prod.toml",
    )
    group.add_argument(
        "--env",
        default="local",
        help="named settings file checkpoints_conf/<ENV>.toml, used when --config is not given "
        "(default: %(default)s). e.g. --env glue",
    )
    group.add_argument(
        "--source",
        metavar="URI",
        help="landing prefix the files arrive in: a folder or s3a://bucket/prefix (default: the settings file's "
        "`source`). e.g. --source s3a://landing/fhir/encounter/",
    )
    group.add_argument(
        "--warehouse",
        metavar="URI",
        help="root of the Hudi tables, each at <warehouse>/<table> (default: the settings file's `warehouse`). "
        "e.g. --warehouse data/warehouse",
    )
    group.add_argument(
        "--checkpoint",
        metavar="URI",
        help="Spark checkpoint of the stream; keep it on a store with atomic rename "
        "(default: <warehouse>/_checkpoints/bronze_encounter). e.g. --checkpoint /var/lib/bronze/checkpoint",
    )
    group.add_argument(
        "--ledger-backend",
        dest="ledger.backend",
        choices=["sqlite", "dynamodb"],
        help="where the file ledger lives: sqlite on local disk or a DynamoDB table (default: the settings file's "
        "ledger.backend, sqlite locally)",
    )
    group.add_argument(
        "--ledger-table",
        dest="ledger.table",
        metavar="NAME",
        help="DynamoDB table of the ledger, for --ledger-backend dynamodb (default: bronze_encounter_ledger). "
        "e.g. --ledger-table prod_bronze_ledger",
    )
    group.add_argument(
        "--ledger-path",
        dest="ledger.path",
        metavar="FILE",
        help="SQLite file of the ledger, for --ledger-backend sqlite (default: "
        "<warehouse>/_ledger/ledger.sqlite3). e.g. --ledger-path /var/lib/bronze/ledger.sqlite3",
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting by its dotted key, repeatable (default: none). "
        "e.g. --set fhir.max_depth=32 --set metrics.backend=cloudwatch",
    )
    return parent


def _output_parent() -> argparse.ArgumentParser:
    """How much a command shows: quiet by default, everything with --verbose."""
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show what is hidden by default: the JVM's start-up warnings and log4j output, and the job's "
        "INFO/DEBUG log lines",
    )
    return parent


def parser() -> argparse.ArgumentParser:
    """The whole command line: `bronze-encounter <command> [options]`."""
    formatter = argparse.RawDescriptionHelpFormatter
    # allow_abbrev=False: Glue passes its own `--conf ...` argument, which a prefix match would read as --config.
    top = argparse.ArgumentParser(
        prog="bronze-encounter", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter, allow_abbrev=False
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    settings, output = _settings_parent(), _output_parent()

    def command(name: str, summary: str, details: str, parents: list[argparse.ArgumentParser]) -> Any:
        return sub.add_parser(
            name,
            help=summary,
            description=f"{summary}.\n\n{details}",
            parents=parents,
            formatter_class=formatter,
            allow_abbrev=False,
        )

    run = command(
        "run",
        "Run the streaming job: until stopped, or once over what is there with --once",
        "On a terminal it shows live progress; otherwise it prints one JSON line per micro-batch on stdout and a\n"
        "summary line at the end. SIGTERM or Ctrl-C stop it after the current batch.\n\n"
        "example:\n  bronze-encounter run --source s3a://landing/fhir/ --warehouse s3a://lake/bronze/ "
        "--ledger-backend dynamodb",
        [settings, output],
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="process the files that are there now (Trigger.AvailableNow), then exit 0 (default: run until stopped)",
    )
    run.add_argument(
        "--trigger-interval",
        dest="trigger_interval",
        metavar="INTERVAL",
        help="how often the continuous stream looks for new files (default: the settings file's trigger_interval, "
        "10 seconds locally). e.g. --trigger-interval '1 minute'",
    )
    run.add_argument(
        "--max-files-per-trigger",
        dest="max_files_per_trigger",
        type=int,
        metavar="N",
        help="most files one micro-batch takes (default: the settings file's max_files_per_trigger, 500 locally). "
        "e.g. --max-files-per-trigger 100",
    )

    demo = command(
        "demo",
        "Generate synthetic encounters and ingest them locally; no AWS account needed",
        "Empties --workdir, writes FHIR R4 files to <workdir>/landing, runs the job once into <workdir>/warehouse\n"
        "and shows how many rows each hospital got.\n\nexample:\n  bronze-encounter demo --files 10 --per-file 50",
        [output],
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("work/demo"),
        metavar="DIR",
        help="folder the demo empties and then uses for landing and warehouse (default: %(default)s). "
        "e.g. --workdir /tmp/demo",
    )
    demo.add_argument(
        "--files",
        type=int,
        default=40,
        metavar="N",
        help="how many files to generate (default: %(default)s). e.g. --files 10",
    )
    demo.add_argument(
        "--per-file",
        dest="per_file",
        type=int,
        default=100,
        metavar="N",
        help="encounters per file (default: %(default)s). e.g. --per-file 50",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        metavar="N",
        help="random seed: the same seed generates the same files (default: %(default)s). e.g. --seed 1",
    )

    gen = command(
        "generate",
        "Write synthetic FHIR R4 Encounter files (NDJSON, every 4th a pretty-printed single resource)",
        "example:\n  bronze-encounter generate --out data/landing --files 5 --per-file 20",
        [],
    )
    gen.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder to write into (required). e.g. --out landing"
    )
    gen.add_argument(
        "--files", type=int, required=True, metavar="N", help="how many files to write (required). e.g. --files 5"
    )
    gen.add_argument(
        "--per-file",
        dest="per_file",
        type=int,
        required=True,
        metavar="N",
        help="encounters per file (required). e.g. --per-file 20",
    )
    gen.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="random seed: the same seed writes the same files (default: %(default)s). e.g. --seed 3",
    )

    query = command(
        "query",
        "Run a SQL query over the three tables, without Spark",
        "The tables are read with hudi-rs and queried with DuckDB under their own names (bronze_encounter,\n"
        "bronze_encounter_ingest_log, bronze_encounter_quarantine).\n\n"
        'example:\n  bronze-encounter query --format csv "SELECT status, count(*) FROM bronze_encounter GROUP BY 1"',
        [settings, output],
    )
    query.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="how to print the result: aligned table, CSV or JSON (default: %(default)s)",
    )
    query.add_argument(
        "sql", metavar="SQL", help='one SQL statement (DuckDB dialect). e.g. "SELECT count(*) FROM bronze_encounter"'
    )

    status = command(
        "status",
        "Show the job's state: files waiting, recent batches, quarantine by reason, table figures",
        "example:\n  bronze-encounter status --env glue --format json --last 20",
        [settings, output],
    )
    status.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text for people, json for scripts and monitors (default: %(default)s)",
    )
    status.add_argument(
        "--last",
        type=int,
        default=10,
        metavar="N",
        help="how many of the newest batches to show (default: %(default)s). e.g. --last 50",
    )

    reingest = command(
        "reingest",
        "Ingest named files again, even if already committed (a corrected file landed under the same name)",
        "One exactly-once batch under the writer lease: refused while the stream or another backfill writes.\n\n"
        "example:\n  bronze-encounter reingest --warehouse wh/ landing/2024/encounters-07.ndjson",
        [settings, output],
    )
    reingest.add_argument(
        "uris",
        nargs="+",
        metavar="FILE_URI",
        help="file to take again: a local path or s3://bucket/key; repeatable. e.g. s3://landing/fhir/a.ndjson",
    )

    replay = command(
        "replay-quarantine",
        "Take the files behind quarantine rows again and drop the rows they no longer produce",
        "Use it after fixing the cause (a mapping change, a raised limit).\n\n"
        "example:\n  bronze-encounter replay-quarantine --reason record_too_large "
        "--set fhir.max_document_bytes=1073741824",
        [settings, output],
    )
    replay.add_argument(
        "--reason",
        metavar="REASON",
        help="only rows with this quarantine reason (default: every row). e.g. --reason bad_datetime",
    )
    return top


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bronze-encounter")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def load_config(args: argparse.Namespace) -> conf.JobConfig:
    """Settings of a command: flags > --config file (else checkpoints_conf/<env>.toml) > defaults."""
    file = args.config
    if file is None and conf.env_file(args.env).exists():
        file = conf.env_file(args.env)
    flags: dict[str, Any] = {key: getattr(args, key, None) for key in SETTING_FLAGS}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise conf.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        flags[key.strip()] = value
    config = conf.load(file, flags)
    return _verbose(config) if getattr(args, "verbose", False) else config


# Spark log levels from the quietest; --verbose lowers a quieter one to WARN, a louder one (INFO, DEBUG) stays.
_QUIET_LEVELS = ("OFF", "FATAL", "ERROR")


def _verbose(config: conf.JobConfig) -> conf.JobConfig:
    """The same settings with the JVM's warnings and start-up lines shown (--verbose)."""
    level = "WARN" if config.spark.log_level.upper() in _QUIET_LEVELS else config.spark.log_level
    return dataclasses.replace(config, spark=dataclasses.replace(config.spark, quiet=False, log_level=level))


# -- output ----------------------------------------------------------------------------------------------------


def batch_line(result: BatchResult) -> dict[str, Any]:
    """One batch as the structured line printed when stdout is not a terminal (ids and counts, never content)."""
    stats, lag = result.stats, result.lag_seconds
    return {
        "event": "batch",
        "batch_id": result.batch_id,
        "batch_key": result.batch_key,
        "files": len(result.files),
        "files_already_committed": result.files_already_committed,
        "rows_in": stats.rows_in,
        "rows_written": stats.rows_written,
        "rows_deleted": stats.rows_deleted,
        "rows_rejected": stats.rows_rejected,
        "rows_skipped": stats.rows_skipped,
        "seconds": round(result.seconds, 3),
        "lag_seconds": None if lag is None else round(lag, 3),
    }


def summary_line(summary: RunSummary) -> str:
    """The last line of `run` and `reingest` (scripts and tests read it)."""
    return (
        f"run {summary.run_id}: {len(summary.batches)} batches, {summary.files} files, "
        f"{summary.rows_written} rows written, {summary.rows_rejected} rejected, {summary.seconds:.1f}s"
    )


def _print_batch_line(result: BatchResult) -> None:
    # flush: stdout is a pipe or a file here, read while the job runs.
    print(json.dumps(batch_line(result)), flush=True)


def _on_terminal() -> bool:
    return sys.stdout.isatty()


class LiveProgress:
    """On a terminal: one live line of counters, refreshed by rich while batches finish."""

    def __init__(self, title: str) -> None:
        from rich.spinner import Spinner

        self.title = title
        self.started = time.monotonic()
        self.batches: list[BatchResult] = []  # appended by the stream's thread, read by rich's refresh thread
        self._spinner = Spinner("dots", style="cyan")

    def __call__(self, result: BatchResult) -> None:
        self.batches.append(result)

    def __rich__(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        batches = list(self.batches)
        elapsed = time.monotonic() - self.started
        line = Table.grid(padding=(0, 1))
        if not batches:
            waiting = Text(f"waiting for the first batch… {elapsed:.0f}s", style="dim")
            line.add_row(self._spinner, Text(self.title, style="bold"), waiting)
            return line
        rows = sum(b.stats.rows_in for b in batches)
        busy = sum(b.seconds for b in batches)
        rejected = sum(b.stats.rows_rejected for b in batches)
        lag = batches[-1].lag_seconds
        line.add_row(
            self._spinner,
            Text(self.title, style="bold"),
            Text(f"files {sum(len(b.files) for b in batches):,}"),
            Text(f"· rows {rows:,}"),
            Text(f"· {rows / busy if busy else 0:,.0f} rows/s"),
            Text("· lag -" if lag is None else f"· lag {lag:,.1f}s"),
            Text(f"· batches {len(batches):,}"),
            Text(f"· rejected {rejected:,}", style="red" if rejected else ""),
            Text(f"· {elapsed:.0f}s", style="dim"),
        )
        return line


def _with_progress(title: str, work: Callable[[Callable[[BatchResult], None]], Any]) -> Any:
    """Call `work(observer)`: live progress on a terminal, one JSON line per batch otherwise."""
    if not _on_terminal():
        return work(_print_batch_line)
    from rich.live import Live

    progress = LiveProgress(title)
    with Live(progress, console=_console(), refresh_per_second=4, transient=True):
        return work(progress)


def _console() -> Console:
    from rich.console import Console

    return Console()


def _setup_logging(verbose: bool) -> None:
    """Log lines go to stderr: INFO as always when stdout is not a terminal, WARNING and up on one, all with -v."""
    level = logging.INFO if verbose or not _on_terminal() else logging.WARNING
    if _on_terminal():
        from rich.console import Console
        from rich.logging import RichHandler

        # Through rich, so a warning prints above the live progress line instead of through it.
        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("streaming").setLevel(logging.DEBUG)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are per-callback noise


# -- commands --------------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from streaming import job

    config = load_config(args)
    summary = _with_progress(config.tables.encounter, lambda observe: job.run(config, once=args.once, on_batch=observe))
    print(summary_line(summary), flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from streaming import job
    from streaming.generate import generate
    from streaming.session import build_spark

    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    landing, warehouse = work / "landing", work / "warehouse"
    generated = generate(landing, files=args.files, per_file=args.per_file, seed=args.seed)
    config = conf.load(conf.env_file("local"), {"source": str(landing), "warehouse": str(warehouse)})
    config = _verbose(config) if args.verbose else config
    spark = build_spark(config.spark)
    summary = _with_progress("demo", lambda observe: job.run(config, once=True, spark=spark, on_batch=observe))

    table = config.table_uri(config.tables.encounter)
    bronze = spark.read.format("hudi").load(table)
    per_hospital = bronze.groupBy("hospital_name").agg(F.count(F.lit(1)).alias("rows")).orderBy("hospital_name")
    hospitals = [(r["hospital_name"], r["rows"]) for r in per_hospital.collect()]
    paths = {
        "table": table,
        "ingest log": config.table_uri(config.tables.ingest_log),
        "quarantine": config.table_uri(config.tables.quarantine),
        "ledger": config.ledger_path,
    }
    ingested = (
        f"ingested {summary.files} files in {len(summary.batches)} batch(es): "
        f"{summary.rows_written} rows written, {summary.rows_rejected} rejected, {summary.seconds:.1f}s"
    )
    generated_line = (
        f"{len(generated.files)} files with {len(generated.encounter_ids)} encounters generated in {landing}"
    )
    try_next = [  # what to do with the result, without writing code
        f"bronze-encounter status --warehouse {warehouse}",
        f'bronze-encounter query --warehouse {warehouse} "SELECT hospital_name, count(*) FROM bronze_encounter'
        ' GROUP BY 1"',
    ]
    if _on_terminal():
        _demo_summary_rich(config.tables.encounter, generated_line, ingested, hospitals, paths)
        _console().print("try next:\n" + "\n".join(f"  {line}" for line in try_next), highlight=False, markup=False)
    else:
        print()
        print(f"demo: {generated_line}")
        print(f"      {ingested}")
        print(f"      {config.tables.encounter} holds {sum(n for _, n in hospitals)} rows:")
        for name, rows in hospitals:
            print(f"        {rows:6d}  {name}")
        for label, path in paths.items():
            print(f"      {label + ':':11} {path}")
        print("try next:")
        for line in try_next:
            print(f"  {line}")
    spark.stop()
    return 0


def _demo_summary_rich(
    table: str, generated: str, ingested: str, hospitals: list[tuple[str, int]], paths: dict[str, str]
) -> None:
    from rich.table import Table
    from rich.text import Text

    console = _console()
    console.print(Text.assemble(("demo", "bold"), f": {generated}"), highlight=False)
    console.print(Text(f"      {ingested}"), highlight=False)
    rows = Table(title=f"{table}: rows per hospital", title_justify="left")
    rows.add_column("hospital_name")
    rows.add_column("rows", justify="right")
    for name, count in hospitals:
        rows.add_row(name if name is not None else "(none)", f"{count:,}")
    rows.add_section()
    rows.add_row("total", f"{sum(n for _, n in hospitals):,}", style="bold")
    console.print(rows)
    where = Table.grid(padding=(0, 2))
    for label, path in paths.items():
        where.add_row(label, path)
    console.print(where)


def _generate(args: argparse.Namespace) -> int:
    from streaming.generate import generate

    generated = generate(args.out, files=args.files, per_file=args.per_file, seed=args.seed)
    print(f"wrote {len(generated.files)} files, {len(generated.encounter_ids)} encounters to {args.out}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from streaming import query as q

    config = load_config(args)
    try:
        print(q.render(q.query(config, args.sql), args.format))
    except q.QueryError as exc:
        print(f"bronze-encounter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _status(args: argparse.Namespace) -> int:
    from streaming import status as st

    config = load_config(args)
    state = st.collect(config, last=args.last)
    print(json.dumps(state.to_json(), indent=2) if args.format == "json" else st.render_text(state))
    return 0


def _reingest(args: argparse.Namespace) -> int:
    from streaming import reingest as ri

    config = load_config(args)
    summary = ri.reingest(config, args.uris)
    _print_batches(summary)
    print(summary_line(summary), flush=True)
    return 0


def _replay_quarantine(args: argparse.Namespace) -> int:
    from streaming import reingest as ri

    config = load_config(args)
    replay = ri.replay_quarantine(config, reason=args.reason)
    _print_batches(replay.summary)
    print(
        f"replay {replay.summary.run_id}: {len(replay.files)} files taken again, {replay.rows_fixed} quarantine "
        f"rows fixed, {replay.rows_still_quarantined} still quarantined, "
        f"{replay.summary.rows_written} rows written",
        flush=True,
    )
    return 0


def _print_batches(summary: RunSummary) -> None:
    """The same structured batch lines as `run`, for scripts (a terminal gets the summary line only)."""
    if not _on_terminal():
        for result in summary.batches:
            _print_batch_line(result)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "demo": _demo,
    "generate": _generate,
    "query": _query,
    "status": _status,
    "reingest": _reingest,
    "replay-quarantine": _replay_quarantine,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        return COMMANDS[args.command](args)
    except conf.ConfigError as exc:
        print(f"bronze-encounter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LeaseHeld as exc:
        print(f"bronze-encounter: another instance is writing this table: {exc}", file=sys.stderr)
        return EXIT_LEASE
    except LedgerUnavailable as exc:
        print(f"bronze-encounter: ledger unavailable: {exc}", file=sys.stderr)
        return EXIT_LEDGER
    except FileReadError as exc:
        print(f"bronze-encounter: {exc}", file=sys.stderr)
        return EXIT_FILE


if __name__ == "__main__":
    sys.exit(main())
