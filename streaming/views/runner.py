"""The SQL on FHIR v2 conformance suite on Spark: every case run, compared as the reference runner does, reported.

A suite folder holds `tests/*.json`; each file has `resources` and `tests` (a view and `expect` rows,
`expectCount`, or `expectError`). Rows compare regardless of order, values by JSON meaning (`5` equals `5.000`);
`expectError` passes on a compile-time or a run-time error. The report follows the suite's
`test-report.schema.json`: file -> {"tests": [{"name", "result": {"passed", "error"?, "details"?}}]}.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.ops.sql_output import plain
from streaming.viewdef.compiler import CompiledView, compile_view
from streaming.viewdef.errors import ViewError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_ERROR_CHARS = 500  # a Spark error's first line can carry a whole plan


@dataclass(frozen=True)
class SuiteFile:
    """One test file of the suite: its name (`basic.json`), its resources and its cases."""

    name: str
    resources: list[dict[str, Any]]
    tests: list[dict[str, Any]]


@dataclass(frozen=True)
class CaseResult:
    """How one case went; `rows` are the view's actual rows (None when it failed to compile or run)."""

    file: str
    index: int
    title: str
    tags: tuple[str, ...]
    passed: bool
    error: str | None
    rows: list[dict[str, Any]] | None
    seconds: float
    details: Mapping[str, Any] = field(default_factory=dict)


def load_suite(folder: Path) -> list[SuiteFile]:
    """The suite's test files in name order (`folder` is the suite or its `tests` folder)."""
    tests = folder / "tests" if (folder / "tests").is_dir() else folder
    files = sorted(tests.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no test files (*.json) in {tests}")
    suite = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        suite.append(SuiteFile(path.name, data["resources"], data["tests"]))
    return suite


def _canonical(value: Any) -> Any:
    """A value compared by its JSON meaning: numbers by value (never equal to booleans), lists in order."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value)).normalize()
        return f"number:{number:f}"
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


def mismatch(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str | None:
    """Why `actual` rows are not `expected` (as multisets of rows), or None when they match. Names no values."""
    if len(actual) != len(expected):
        return f"expected {len(expected)} rows, got {len(actual)}"

    def key(row: Mapping[str, Any]) -> str:
        return json.dumps(_canonical(row), sort_keys=True)

    missing = Counter(key(r) for r in expected) - Counter(key(r) for r in actual)
    if missing:
        expected_keys = sorted({k for r in expected for k in r})
        actual_keys = sorted({k for r in actual for k in r})
        if expected_keys != actual_keys:
            return f"expected columns {expected_keys}, got {actual_keys}"
        return f"{sum(missing.values())} of {len(expected)} expected rows not found"
    return None


def resources_frame(spark: SparkSession, resources: list[dict[str, Any]]) -> DataFrame:
    """The file's resources as the job reads them: one row per resource, its JSON text in `resource_json`.

    Built from literals in the JVM: a DataFrame made from Python rows starts Python workers for every query
    (measured: 1.5 s per case instead of 0.3 s).
    """
    from pyspark.sql import functions as F

    texts = [F.lit(json.dumps(r)) for r in resources]
    if not texts:
        return spark.createDataFrame([], "resource_json string")
    return spark.range(1).select(F.explode(F.array(*texts)).alias("resource_json"))


def evaluate(view: CompiledView, resources: DataFrame) -> list[dict[str, Any]]:
    """The view's rows over `resources`, as JSON-like dicts in column order."""
    return [plain(row.asDict(recursive=True)) for row in view.apply(resources).collect()]


def error_line(exc: BaseException) -> str:
    """The error's message in one line: the view's own (raise_error) when the job failed on it."""
    text = str(exc).strip() or type(exc).__name__
    own = re.search(r"(view '[^\n]*)", text)
    return f"{type(exc).__name__}: {own.group(1) if own else text.splitlines()[0]}"[:_ERROR_CHARS]


def run_case(spark: SparkSession, file: SuiteFile, index: int, resources: DataFrame | None = None) -> CaseResult:
    """Run case `index` of `file` and judge it; never raises for the view's own errors."""
    case = file.tests[index]
    started = time.perf_counter()
    frame = resources if resources is not None else resources_frame(spark, file.resources)
    rows: list[dict[str, Any]] | None = None
    error: str | None = None
    try:
        view = compile_view(case["view"])
        rows = evaluate(view, frame)
    except ViewError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # Spark's errors (raise_error, analysis): the case fails, the suite goes on
        error = error_line(exc)
    details: dict[str, Any] = {}
    if case.get("expectError"):
        passed = rows is None
        problem = None if passed else f"expected an error, got {len(rows or [])} rows"
        details["raised"] = error  # which error made it pass, to check it is the one the case is about
    elif rows is None:
        passed, problem = False, error
    else:
        problem = None
        names = [c.name for c in view.columns]
        if "expectColumns" in case and names != case["expectColumns"]:
            problem = f"expected columns {case['expectColumns']}, got {names}"
        elif "expect" in case:
            problem = mismatch(rows, case["expect"])
        elif "expectCount" in case and len(rows) != case["expectCount"]:
            problem = f"expected {case['expectCount']} rows, got {len(rows)}"
        passed = problem is None
    return CaseResult(
        file.name,
        index,
        case["title"],
        tuple(case.get("tags", ())),
        passed,
        problem if not passed else None,
        rows,
        time.perf_counter() - started,
        details,
    )


def run_suite(spark: SparkSession, folder: Path) -> Iterator[CaseResult]:
    """Every case of the suite in `folder`, file by file, in order."""
    for file in load_suite(folder):
        frame = resources_frame(spark, file.resources)
        for index in range(len(file.tests)):
            yield run_case(spark, file, index, frame)


def report(results: list[CaseResult]) -> dict[str, Any]:
    """The results in the suite's report schema (test-report.schema.json)."""
    out: dict[str, Any] = {}
    for r in results:
        result: dict[str, Any] = {"passed": r.passed}
        if r.error:
            result["error"] = r.error
        result["details"] = {"index": r.index, "tags": list(r.tags), "seconds": round(r.seconds, 3), **r.details}
        out.setdefault(r.file, {"tests": []})["tests"].append({"name": r.title, "result": result})
    return out


def write_actual(results: list[CaseResult], folder: Path) -> None:
    """Each case's actual rows as `<file stem>/<case index>.json` (a JSON array); nothing for a failed view."""
    for r in results:
        if r.rows is None:
            continue
        target = folder / Path(r.file).stem / f"{r.index}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(r.rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def summary(results: list[CaseResult]) -> str:
    """Pass counts per file and tag, as a text table."""
    lines = [f"{'file':<24} {'shareable':>11} {'experimental':>13}"]
    totals: Counter[str] = Counter()
    for name in dict.fromkeys(r.file for r in results):
        cells = []
        for tag in ("shareable", "experimental"):
            tagged = [r for r in results if r.file == name and tag in r.tags]
            passed = sum(r.passed for r in tagged)
            totals[f"{tag} passed"] += passed
            totals[tag] += len(tagged)
            cells.append(f"{passed}/{len(tagged)}" if tagged else "-")
        lines.append(f"{name:<24} {cells[0]:>11} {cells[1]:>13}")
    share, experimental = (
        f"{totals[f'{t} passed']}/{totals[t]}" if totals[t] else "-" for t in ("shareable", "experimental")
    )
    lines.append(f"{'total':<24} {share:>11} {experimental:>13}")
    return "\n".join(lines)
