"""What `bronze-encounter views run` and `views test` do, once the CLI has parsed their arguments."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from streaming.bronze.records import LandedFile
from streaming.config import ConfigError, FhirConfig
from streaming.ops.sql_output import render
from streaming.viewdef import shipped
from streaming.viewdef.compiler import CompiledView, compile_view
from streaming.viewdef.errors import ViewError
from streaming.views import runner
from streaming.views.source import read_resources

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession


def load_view(spec: str | Path, fhir_version: str) -> CompiledView:
    """The view `spec` names, compiled: a shipped view's name, else a ViewDefinition file; ConfigError says why not.

    A name is text without a path separator or `.json`: `patient` is the shipped view, `./patient` a file.
    """
    text = str(spec)
    if "/" not in text and "\\" not in text and not text.endswith(".json"):
        try:
            return shipped.shipped_view(text, fhir_version)
        except ViewError as exc:
            raise ConfigError(f"--view {text}: {exc}; or give a ViewDefinition file (e.g. ./view.json)") from None
    return _load_file(Path(text), fhir_version)


def _load_file(path: Path, fhir_version: str) -> CompiledView:
    """The ViewDefinition in `path`, compiled; ConfigError names what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--view {path}: cannot read it ({type(exc).__name__})") from None
    try:
        view = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--view {path}: not JSON ({exc})") from None
    try:
        return compile_view(view, fhir_version=fhir_version)
    except ViewError as exc:
        raise ConfigError(f"--view {path}: {exc}") from None


def run_view(
    spark: SparkSession, view: CompiledView, files: Sequence[LandedFile], fmt: str
) -> tuple[str, dict[str, int]]:
    """The view's rows over `files`, rendered in `fmt`, and how many inputs were no resource, by reason."""
    table, skipped = view_rows(spark, view, files)
    return render(table, fmt), skipped


def view_rows(spark: SparkSession, view: CompiledView, files: Sequence[LandedFile]) -> tuple[pa.Table, dict[str, int]]:
    """The view's rows over `files` as Arrow (the view's column types), and the inputs that were no resource."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    resources = read_resources(spark, files, FhirConfig()).persist()
    try:
        reasons = resources.where(F.col("reason").isNotNull()).groupBy("reason").count().collect()
        skipped = {r["reason"]: r["count"] for r in reasons}
        rows = view.apply(resources.where(F.col("resource_json").isNotNull()))
        try:
            collected = [row.asDict(recursive=True) for row in rows.collect()]
        except Exception as exc:  # the view's run-time checks (raise_error) fail the job: a view that misfits
            message = runner.error_line(exc)
            if "view '" not in message:
                raise
            raise ConfigError(message.split(": ", 1)[1]) from None
        return pa.Table.from_pylist(collected, schema=to_arrow_schema(rows.schema)), skipped
    finally:
        resources.unpersist()


def check_suite(folder: Path) -> list[runner.SuiteFile]:
    """The suite in `folder`; ConfigError when there is none."""
    try:
        return runner.load_suite(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--suite {folder}: not a SQL on FHIR test suite ({exc})") from None


def run_suite(spark: SparkSession, folder: Path, report: Path, actual: Path | None) -> list[runner.CaseResult]:
    """Every case of the suite; the report (and each case's actual rows) written."""
    results = list(runner.run_suite(spark, folder))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(runner.report(results), indent=2) + "\n", encoding="utf-8")
    if actual is not None:
        runner.write_actual(results, actual)
    return results


def skipped_line(skipped: dict[str, int]) -> str:
    """One line on the inputs that gave no resource, by reason (empty when there were none)."""
    if not skipped:
        return ""
    reasons = ", ".join(f"{reason} {count}" for reason, count in Counter(skipped).most_common())
    return f"skipped {sum(skipped.values())} inputs that are no FHIR resource ({reasons})"


def suite_text(results: list[runner.CaseResult]) -> str:
    """What `views test` prints: the failed cases, then pass counts per file and tag, and the time taken."""
    failed = [r for r in results if not r.passed]
    lines = [f"failed: {r.file} #{r.index} {r.title!r} ({', '.join(r.tags)}): {r.error}" for r in failed]
    seconds = sum(r.seconds for r in results)
    return "\n".join([*lines, runner.summary(results), f"{len(results)} cases in {seconds:.1f} s"])
