"""`bronze-encounter`: demo, run and generate. Parses arguments and wires; the work happens elsewhere."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streaming import config as conf
from streaming.ledger import LeaseHeld, LedgerUnavailable

EXIT_CONFIG = 2
EXIT_LEASE = 3
EXIT_LEDGER = 4


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bronze-encounter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the streaming job (until stopped, or once with --once)")
    run.add_argument("--source", help="landing folder or s3a://bucket/prefix")
    run.add_argument("--warehouse", help="root of the Hudi tables (folder or s3a://bucket/prefix)")
    run.add_argument("--checkpoint", help="Spark checkpoint (default <warehouse>/_checkpoints/bronze_encounter)")
    run.add_argument("--config", type=Path, help="settings file (default checkpoints_conf/<env>.toml)")
    run.add_argument("--env", default="local", help="named settings file in checkpoints_conf/ (default local)")
    run.add_argument("--once", action="store_true", help="process what is there, then exit 0")
    run.add_argument("--trigger-interval", dest="trigger_interval", help="e.g. '30 seconds'")
    run.add_argument("--max-files-per-trigger", dest="max_files_per_trigger", type=int)
    run.add_argument("--ledger-backend", dest="ledger.backend", choices=["sqlite", "dynamodb"])
    run.add_argument("--ledger-table", dest="ledger.table", help="DynamoDB table of the ledger")
    run.add_argument("--ledger-path", dest="ledger.path", help="SQLite file of the ledger")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, dotted (e.g. fhir.max_depth=32); repeatable",
    )

    demo = sub.add_parser("demo", help="generate encounters and ingest them locally, no AWS account needed")
    demo.add_argument("--workdir", type=Path, default=Path("work/demo"), help="emptied, then used (default work/demo)")
    demo.add_argument("--files", type=int, default=40)
    demo.add_argument("--per-file", dest="per_file", type=int, default=100)
    demo.add_argument("--seed", type=int, default=7)

    gen = sub.add_parser("generate", help="write synthetic FHIR R4 Encounter files")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--files", type=int, required=True)
    gen.add_argument("--per-file", dest="per_file", type=int, required=True)
    gen.add_argument("--seed", type=int, default=0)
    return parser


def load_config(args: argparse.Namespace) -> conf.JobConfig:
    """Settings for `run`: flags > --config file (else checkpoints_conf/<env>.toml) > defaults."""
    file = args.config
    if file is None and conf.env_file(args.env).exists():
        file = conf.env_file(args.env)
    flags: dict[str, Any] = {
        key: getattr(args, key)
        for key in (
            "source",
            "warehouse",
            "checkpoint",
            "trigger_interval",
            "max_files_per_trigger",
            "ledger.backend",
            "ledger.table",
            "ledger.path",
        )
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise conf.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        flags[key.strip()] = value
    return conf.load(file, flags)


def _run(args: argparse.Namespace) -> int:
    from streaming import job

    config = load_config(args)
    summary = job.run(config, once=args.once)
    print(
        f"run {summary.run_id}: {len(summary.batches)} batches, {summary.files} files, "
        f"{summary.rows_written} rows written, {summary.rows_rejected} rejected, {summary.seconds:.1f}s"
    )
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
    spark = build_spark(config.spark)
    summary = job.run(config, once=True, spark=spark)

    table = config.table_uri(config.tables.encounter)
    bronze = spark.read.format("hudi").load(table)
    per_hospital = bronze.groupBy("hospital_name").agg(F.count(F.lit(1)).alias("rows")).orderBy("hospital_name")
    hospitals = per_hospital.collect()
    print()
    print(f"demo: {len(generated.files)} files with {len(generated.encounter_ids)} encounters generated in {landing}")
    print(
        f"      ingested {summary.files} files in {len(summary.batches)} batch(es): "
        f"{summary.rows_written} rows written, {summary.rows_rejected} rejected, {summary.seconds:.1f}s"
    )
    print(f"      {config.tables.encounter} holds {sum(r['rows'] for r in hospitals)} rows:")
    for r in hospitals:
        print(f"        {r['rows']:6d}  {r['hospital_name']}")
    print(f"      table:      {table}")
    print(f"      ingest log: {config.table_uri(config.tables.ingest_log)}")
    print(f"      quarantine: {config.table_uri(config.tables.quarantine)}")
    print(f"      ledger:     {config.ledger_path}")
    spark.stop()
    return 0


def _generate(args: argparse.Namespace) -> int:
    from streaming.generate import generate

    generated = generate(args.out, files=args.files, per_file=args.per_file, seed=args.seed)
    print(f"wrote {len(generated.files)} files, {len(generated.encounter_ids)} encounters to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are per-callback noise
    try:
        return {"run": _run, "demo": _demo, "generate": _generate}[args.command](args)
    except conf.ConfigError as exc:
        print(f"bronze-encounter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LeaseHeld as exc:
        print(f"bronze-encounter: another instance is writing this table: {exc}", file=sys.stderr)
        return EXIT_LEASE
    except LedgerUnavailable as exc:
        print(f"bronze-encounter: ledger unavailable: {exc}", file=sys.stderr)
        return EXIT_LEDGER


if __name__ == "__main__":
    sys.exit(main())
