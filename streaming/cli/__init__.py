"""`bronze-encounter`, the command line: parses arguments, sets up output, and hands each command to its module."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from streaming import config as conf
from streaming.cli import exits, progress
from streaming.cli.settings import load_config, settings_parent, verbose

# The codes a command ends with (streaming/cli/exits.py says what stands behind each).
EXIT_CONFIG = exits.CONFIG
EXIT_LEASE = exits.LEASE
EXIT_LEDGER = exits.LEDGER
EXIT_FILE = exits.FILE
EXIT_BEHIND = exits.BEHIND
EXIT_STALLED = exits.STALLED

DESCRIPTION = """\
Ingest FHIR Encounter files into the Apache Hudi table bronze_encounter, exactly once.

Files landing under a folder or an S3 prefix (single resources, Bundles, NDJSON, gzip; FHIR R4 or R5) become one
row per Encounter. Every micro-batch is recorded in bronze_encounter_ingest_log; input that cannot become a row
goes to bronze_encounter_quarantine with a reason. The same job runs as an AWS Glue streaming job and on a laptop.
"""

EPILOG = "\n".join(
    [
        "examples:",
        "  bronze-encounter demo                          # generate encounters, ingest them locally, show a summary",
        "  bronze-encounter run --source landing/ --warehouse wh/ --once",
        "  bronze-encounter status --source landing/ --warehouse wh/",
        '  bronze-encounter query --warehouse wh/ "SELECT hospital_name, count(*) FROM bronze_encounter GROUP BY 1"',
        "",
        "settings: command-line flag > settings file (--config, else checkpoints_conf/<env>.toml) > defaults; every",
        "key is documented in streaming/config.py.",
        *textwrap.wrap(
            "exit codes: "
            + ", ".join(f"{e.code} {e.short}" for e in exits.EXIT_CODES)
            + " (docs/reference.md, Exit codes).",
            width=115,
        ),
    ]
)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: what was wrong and where to look, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """A count given on the command line: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


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
    top = _Parser(
        prog="bronze-encounter", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter, allow_abbrev=False
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version")
    # Any: typeshed ties the parents of a subcommand to its parser class, and the shared parents are plain parsers.
    sub: Any = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    settings, output = settings_parent(), _output_parent()

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
        type=positive_int,
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
        type=positive_int,
        default=40,
        metavar="N",
        help="how many files to generate (default: %(default)s). e.g. --files 10",
    )
    demo.add_argument(
        "--per-file",
        dest="per_file",
        type=positive_int,
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
        "--files",
        type=positive_int,
        required=True,
        metavar="N",
        help="how many files to write (required). e.g. --files 5",
    )
    gen.add_argument(
        "--per-file",
        dest="per_file",
        type=positive_int,
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
        "bronze_encounter_ingest_log, bronze_encounter_quarantine). The SQL comes as an argument, from -f FILE, from\n"
        "stdin (- or no SQL with stdin not a terminal), or by --name from the ready queries (--list shows them).\n"
        "csv, json and ndjson are written as the rows come; table shows the first 1000 rows unless --limit says.\n\n"
        'example:\n  bronze-encounter query --format csv "SELECT status, count(*) FROM bronze_encounter GROUP BY 1"\n'
        "  bronze-encounter query --name utilisation --as-of 2024-03-01T00:00:00Z",
        [settings, output],
    )
    query.add_argument(
        "--format",
        choices=["table", "csv", "json", "ndjson"],
        default="table",
        help="how to print the result: aligned table, CSV, JSON (an array of row objects) or NDJSON (one object "
        "per line) (default: %(default)s)",
    )
    query.add_argument(
        "sql",
        nargs="?",
        metavar="SQL",
        help='one SQL statement (DuckDB dialect), or - to read it from stdin. e.g. "SELECT count(*) FROM '
        'bronze_encounter"',
    )
    query.add_argument(
        "-f", "--file", metavar="FILE", help="read the SQL from FILE (- for stdin). e.g. -f monthly_counts.sql"
    )
    query.add_argument(
        "--name", metavar="NAME", help="run a ready query by its name (see --list). e.g. --name readmissions_30d"
    )
    query.add_argument("--list", action="store_true", help="list the ready queries, one line each, and exit")
    query.add_argument(
        "--limit",
        metavar="N",
        help="print at most N rows, 0 for all (without it: all, except --format table, which shows the first "
        "1000 and says how many more there are). e.g. --limit 50",
    )
    query.add_argument(
        "--as-of",
        dest="as_of",
        metavar="TIME",
        help="read the tables as they were at TIME: a commit instant (yyyyMMddHHmmss[SSS], as status shows) or an "
        "ISO 8601 time, UTC unless it has an offset. e.g. --as-of 2024-03-01T00:00:00Z",
    )

    status = command(
        "status",
        "Say whether the stream keeps up (OK, BEHIND, STALLED) and show why: files waiting, overwritten or "
        "ignored, the writer lease, recent batches, quarantine by reason, table figures",
        "The thresholds are settings: status.behind_seconds and status.stalled_seconds (streaming/config.py).\n\n"
        "example:\n  bronze-encounter status --env glue --format json --last 20\n"
        "  bronze-encounter status --stack prod --check > /dev/null || page-someone",
        [settings, output],
    )
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 0 only when the verdict is OK: 6 when BEHIND, 7 when STALLED (output unchanged), for cron and "
        "health checks",
    )
    status.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text for people, json for scripts and monitors (default: %(default)s)",
    )
    status.add_argument(
        "--last",
        type=positive_int,
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

    views = command(
        "views",
        "Run SQL on FHIR v2 ViewDefinitions on local Spark without writing a table: one view, or the test suite",
        "examples:\n  bronze-encounter views run --view patient --source landing/ --format csv\n"
        "  bronze-encounter views test --suite ../shared/sql-on-fhir-v2 --report test_report.json",
        [],
    )
    _views_parser(views, output)
    return top


def _views_parser(group: argparse.ArgumentParser, output: argparse.ArgumentParser) -> None:
    """`views run` and `views test`: the ViewDefinition compiler (streaming/viewdef) from the command line."""
    from streaming.viewdef.shipped import SHIPPED_VIEWS

    sub = group.add_subparsers(
        dest="views_command", required=True, metavar="COMMAND", help="run (one view over files) or test (the suite)"
    )

    def command(name: str, summary: str, details: str) -> Any:
        return sub.add_parser(
            name,
            help=summary,
            description=f"{summary}.\n\n{details}",
            parents=[output],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )

    run = command(
        "run",
        "Run one ViewDefinition over FHIR files and print its rows",
        "Files are read as the job reads them (single resources, Bundles, NDJSON, gzip); resources of other types\n"
        "give no rows.\n\nexample:\n  bronze-encounter views run --view patient "
        "--source ../shared/fhir-samples/bulk-10-patients --format json",
    )
    run.add_argument(
        "--view",
        required=True,
        metavar="NAME|FILE",
        help=(
            f"a shipped view by name ({', '.join(SHIPPED_VIEWS)}) or a ViewDefinition JSON file (required)."
            " e.g. --view patient, --view views/my_view.json"
        ),
    )
    run.add_argument(
        "--source",
        required=True,
        metavar="PATH",
        help="a FHIR file, or a local folder of them read recursively (required). e.g. --source landing/",
    )
    run.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="how to print the rows: aligned table, CSV or JSON (default: %(default)s)",
    )
    run.add_argument(
        "--fhir-version",
        dest="fhir_version",
        choices=["R4", "R5"],
        default="R4",
        help="FHIR version of the files: the type model the view is compiled with (default: %(default)s)",
    )
    test = command(
        "test",
        "Run the SQL on FHIR v2 conformance suite and write its report",
        "Every case runs on local Spark; rows compare regardless of order. Exits 1 when a shareable case fails.\n\n"
        "example:\n  bronze-encounter views test --suite ../shared/sql-on-fhir-v2 --report out/test_report.json "
        "--actual out/actual",
    )
    test.add_argument(
        "--suite",
        type=Path,
        required=True,
        metavar="DIR",
        help="the suite's folder, which holds tests/*.json (required). e.g. --suite ../shared/sql-on-fhir-v2",
    )
    test.add_argument(
        "--report",
        type=Path,
        default=Path("test_report.json"),
        metavar="FILE",
        help="the report, in the suite's test-report.schema.json shape (default: %(default)s). "
        "e.g. --report out/test_report.json",
    )
    test.add_argument(
        "--actual",
        type=Path,
        metavar="DIR",
        help="also write each case's rows as DIR/<file stem>/<case index>.json (default: not written). "
        "e.g. --actual out/actual",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bronze-encounter")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


# -- commands: each wires the module that does the work to the output ------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from streaming.pipeline import job

    config = load_config(args)
    conf.check_source(config)
    title = config.tables.encounter
    summary = progress.with_progress(title, lambda observe: job.run(config, once=args.once, on_batch=observe))
    print(progress.summary_line(summary), flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streaming.cli import demo
    from streaming.lakehouse.session import build_spark
    from streaming.pipeline import job

    generated, config = demo.prepare(args.workdir, files=args.files, per_file=args.per_file, seed=args.seed)
    config = verbose(config) if args.verbose else config
    spark = build_spark(config.spark)
    summary = progress.with_progress("demo", lambda observe: job.run(config, once=True, spark=spark, on_batch=observe))
    progress.print_demo(demo.report(spark, config, generated, summary))
    spark.stop()
    return 0


def _generate(args: argparse.Namespace) -> int:
    from streaming.generate import generate

    generated = generate(args.out, files=args.files, per_file=args.per_file, seed=args.seed)
    print(f"wrote {len(generated.files)} files, {len(generated.encounter_ids)} encounters to {args.out}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from streaming.ops import query as q
    from streaming.ops import ready_queries as queries
    from streaming.ops.sql_output import TABLE_ROWS, write

    if args.list:
        width = max(len(ready.name) for ready in queries.QUERIES)
        for ready in queries.QUERIES:
            print(f"{ready.name:<{width}}  {ready.description}")
        return 0
    try:
        sql = _query_sql(args)
        limit = _query_limit(args.limit)
        as_of = None if args.as_of is None else q.as_of_instant(args.as_of)
        config = load_config(args)
        with q.stream(config, sql, as_of=as_of) as result:
            cap = TABLE_ROWS if limit is None and args.format == "table" else limit or 0
            written = write(result, result.schema, args.format, sys.stdout, limit=cap, count=limit is None)
            sys.stdout.flush()
    except q.QueryError as exc:
        print(f"bronze-encounter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        _quiet_stdout()  # the reader left (`query ... | head -1`): stop quietly, as other tools do
        return 0
    if written.hidden:
        print(
            f"bronze-encounter: {written.hidden:,} more rows not shown (of {written.total:,}); "
            "--limit N shows N, --limit 0 all",
            file=sys.stderr,
        )
    return 0


def _query_sql(args: argparse.Namespace) -> str:
    """The SQL to run: the argument, -f FILE, --name or stdin; QueryError with one line when there is none."""
    from streaming.ops import ready_queries as queries
    from streaming.ops.query import QueryError

    sources = (("SQL", args.sql), ("-f", args.file), ("--name", args.name))
    given = [flag for flag, value in sources if value is not None]
    if len(given) > 1:
        raise QueryError(f"give the SQL one way, not {' and '.join(given)}")
    if args.name is not None:
        ready = {r.name: r for r in queries.QUERIES}
        if args.name not in ready:
            raise QueryError(f"no ready query named {args.name!r}; there are {', '.join(ready)} (see --list)")
        return ready[args.name].sql
    if args.file not in (None, "-"):
        try:
            sql, origin = Path(args.file).read_text(encoding="utf-8"), args.file
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise QueryError(f"cannot read SQL from {args.file}: {reason}") from None
    elif args.sql not in (None, "-"):
        sql, origin = args.sql, "the argument"
    elif given or not sys.stdin.isatty():  # `-` said so, or SQL is piped in
        try:
            sql, origin = sys.stdin.read(), "stdin"
        except (OSError, UnicodeDecodeError) as exc:
            raise QueryError(f"cannot read SQL from stdin: {exc}") from None
    else:
        raise QueryError("no SQL: give it as an argument, with -f FILE, with --name NAME (see --list), or on stdin")
    if not sql.strip():
        raise QueryError(f"no SQL in {origin}")
    return sql


def _query_limit(text: str | None) -> int | None:
    """--limit as a row count (0: all), None when not given; QueryError unless a whole number >= 0."""
    from streaming.ops.query import QueryError

    if text is None:
        return None
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 0:
        raise QueryError(f"--limit takes a whole number of rows, 0 for all; got {text!r}")
    return limit


def _status(args: argparse.Namespace) -> int:
    from streaming.ops import query as q
    from streaming.ops import status as st

    config = load_config(args)
    conf.check_source(config)
    q.require_tables(config)
    state = st.collect(config, last=args.last)
    print(json.dumps(state.to_json(), indent=2) if args.format == "json" else st.render_text(state))
    if not args.check:
        return 0
    return {st.BEHIND: EXIT_BEHIND, st.STALLED: EXIT_STALLED}.get(state.verdict.state, 0)


def _reingest(args: argparse.Namespace) -> int:
    from streaming.pipeline import reingest as ri

    config = load_config(args)
    summary = ri.reingest(config, args.uris)
    progress.print_batches(summary)
    print(progress.summary_line(summary), flush=True)
    return 0


def _replay_quarantine(args: argparse.Namespace) -> int:
    from streaming.pipeline import reingest as ri

    config = load_config(args)
    replay = ri.replay_quarantine(config, reason=args.reason)
    progress.print_batches(replay.summary)
    print(progress.replay_line(replay), flush=True)
    return 0


def _views(args: argparse.Namespace) -> int:
    from streaming.lakehouse.session import build_spark
    from streaming.views import commands, source

    spark = conf.SparkConfig(log_level="WARN" if args.verbose else "OFF", quiet=not args.verbose)
    if args.views_command == "run":
        view = commands.load_view(args.view, args.fhir_version)
        files = source.list_files(args.source)
        text, skipped = commands.run_view(build_spark(spark), view, files, args.format)
        print(text, end="" if text.endswith("\n") else "\n")
        if skipped:
            print(f"bronze-encounter: {commands.skipped_line(skipped)}", file=sys.stderr)
        return 0
    commands.check_suite(args.suite)
    results = commands.run_suite(build_spark(spark), args.suite, args.report, args.actual)
    print(commands.suite_text(results))
    return 0 if all(r.passed for r in results if "shareable" in r.tags) else 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "demo": _demo,
    "generate": _generate,
    "query": _query,
    "status": _status,
    "reingest": _reingest,
    "replay-quarantine": _replay_quarantine,
    "views": _views,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error ends it with one line on stderr and its exit code (streaming/cli/exits.py)."""
    args = parser().parse_args(argv)
    loud = getattr(args, "verbose", False)
    progress.setup_logging(loud)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        _quiet_stdout()  # the reader left (`... | head -1`): stop quietly, as other tools do
        return 0
    except Exception as exc:
        code, line = exits.classify(exc)
        if code == exits.FAILED and loud:
            traceback.print_exc()
        print(f"bronze-encounter: {line}", file=sys.stderr)
        return code


def _quiet_stdout() -> None:
    """Later writes, Python's own flush at exit included, go to /dev/null instead of failing again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
