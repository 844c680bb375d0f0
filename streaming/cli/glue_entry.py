"""AWS Glue 5.1 streaming job entrypoint: build the Spark session from Glue, then run the same job as the CLI.

Glue passes job arguments as `--name value`, the same shape as `bronze-encounter run`, so they are parsed by the
CLI's own parser (unknown Glue arguments such as --JOB_ID are ignored). `awsglue` exists only on Glue, so it is
imported here and nowhere else.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from streaming import cli
from streaming import config as conf
from streaming.cli import settings


def load_config(argv: Sequence[str]) -> conf.JobConfig:
    """Job settings from Glue's arguments: `--config` (default glue.toml shipped with --extra-files) + flags."""
    args, _unknown = cli.parser().parse_known_args(["run", *argv])
    if args.config is None:
        shipped = Path("glue.toml")  # --extra-files puts it in the working directory
        args.config = shipped if shipped.exists() else conf.env_file("glue")
    return settings.load_config(args)


def main(argv: Sequence[str] | None = None) -> int:
    from awsglue.context import GlueContext  # provided by the Glue runtime only
    from pyspark.context import SparkContext

    from streaming.pipeline import job

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(sys.argv[1:] if argv is None else argv)
    spark = GlueContext(SparkContext.getOrCreate()).spark_session
    job.run(config, once=False, spark=spark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
