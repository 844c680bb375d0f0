"""What commands print: live progress on a terminal, one JSON line per batch on a pipe, and the closing summaries.

On a terminal, rich draws a live line of counters and tables; elsewhere (a pipe, a file, Glue) every micro-batch
is one JSON object on stdout and the run ends with one summary line, which scripts and tests read. Only ids and
counts are printed, never a record's content. rich is imported only when stdout is a terminal.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from streaming.cli.demo import DemoReport
    from streaming.pipeline.batch import BatchResult
    from streaming.pipeline.job import RunSummary
    from streaming.pipeline.reingest import ReplayResult


def batch_line(result: BatchResult) -> dict[str, Any]:
    """One batch as the structured line printed when stdout is not a terminal (ids and counts, never content)."""
    stats, lag = result.stats, result.lag_seconds
    line: dict[str, Any] = {
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
        "rows_stale": stats.rows_stale,
        "seconds": round(result.seconds, 3),
        "lag_seconds": None if lag is None else round(lag, 3),
        "services": list(result.services),
        "services_failed": list(result.services_failed),
        "log_rows_written": result.log_rows,
    }
    if result.views:  # only when views besides encounter run: the Encounter-only line stays as it was
        line["views"] = {
            name: {**stats.as_dict(), "seconds": result.timings.get(f"view_{name}")}
            for name, stats in result.views.items()
        }
        line["timings"] = dict(result.timings)
    return line


def summary_line(summary: RunSummary) -> str:
    """The last line of `run` and `reingest` (scripts and tests read it)."""
    return (
        f"run {summary.run_id}: {len(summary.batches)} batches, {summary.files} files, "
        f"{summary.rows_written} rows written, {summary.rows_rejected} rejected, {summary.seconds:.1f}s"
    )


def print_batch_line(result: BatchResult) -> None:
    # flush: stdout is a pipe or a file here, read while the job runs.
    print(json.dumps(batch_line(result)), flush=True)


def on_terminal() -> bool:
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


def with_progress(title: str, work: Callable[[Callable[[BatchResult], None]], Any]) -> Any:
    """Call `work(observer)`: live progress on a terminal, one JSON line per batch otherwise."""
    if not on_terminal():
        return work(print_batch_line)
    from rich.live import Live

    progress = LiveProgress(title)
    with Live(progress, console=console(), refresh_per_second=4, transient=True):
        return work(progress)


def console() -> Console:
    from rich.console import Console

    return Console()


def setup_logging(verbose: bool) -> None:
    """Log lines go to stderr: INFO as always when stdout is not a terminal, WARNING and up on one, all with -v."""
    level = logging.INFO if verbose or not on_terminal() else logging.WARNING
    if on_terminal():
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


def print_batches(summary: RunSummary) -> None:
    """The same structured batch lines as `run`, for scripts (a terminal gets the summary line only)."""
    if not on_terminal():
        for result in summary.batches:
            print_batch_line(result)


def replay_line(replay: ReplayResult) -> str:
    """The last line of `replay-quarantine`: files taken again, quarantine rows fixed and left, rows written."""
    return (
        f"replay {replay.summary.run_id}: {len(replay.files)} files taken again, {replay.rows_fixed} quarantine "
        f"rows fixed, {replay.rows_still_quarantined} still quarantined, "
        f"{replay.summary.rows_written} rows written"
    )


def print_demo(report: DemoReport) -> None:
    """The demo's closing summary: what was generated and ingested, rows per hospital, where things are, what next."""
    summary = report.summary
    generated = (
        f"{report.files_generated} files with {report.encounters_generated} encounters generated in {report.landing}"
    )
    ingested = (
        f"ingested {summary.files} files in {len(summary.batches)} batch(es): "
        f"{summary.rows_written} rows written, {summary.rows_rejected} rejected, {summary.seconds:.1f}s"
    )
    program = _program()
    try_next = [  # what to do with the result, without writing code; as typed, they work
        f"{program} status --source {report.landing} --warehouse {report.warehouse}",
        f'{program} query --warehouse {report.warehouse} "SELECT hospital_name, count(*) FROM bronze_encounter'
        ' GROUP BY 1"',
    ]
    if on_terminal():
        _demo_rich(report, generated, ingested)
        console().print("try next:\n" + "\n".join(f"  {line}" for line in try_next), highlight=False, markup=False)
        return
    print()
    print(f"demo: {generated}")
    print(f"      {ingested}")
    print(f"      {report.table} holds {sum(n for _, n in report.hospitals)} rows:")
    for name, rows in report.hospitals:
        print(f"        {rows:6d}  {name}")
    for label, path in report.paths.items():
        print(f"      {label + ':':11} {path}")
    print("try next:")
    for line in try_next:
        print(f"  {line}")


def _program() -> str:
    """How to call the CLI from here: its name when it is on PATH, else the path it was started by (.venv/bin/...)."""
    invoked = sys.argv[0] if sys.argv and sys.argv[0].endswith("bronze-encounter") else ""
    if shutil.which("bronze-encounter") or not invoked:
        return "bronze-encounter"
    return invoked


def _demo_rich(report: DemoReport, generated: str, ingested: str) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    out.print(Text.assemble(("demo", "bold"), f": {generated}"), highlight=False)
    out.print(Text(f"      {ingested}"), highlight=False)
    rows = Table(title=f"{report.table}: rows per hospital", title_justify="left")
    rows.add_column("hospital_name")
    rows.add_column("rows", justify="right")
    for name, count in report.hospitals:
        rows.add_row(name if name is not None else "(none)", f"{count:,}")
    rows.add_section()
    rows.add_row("total", f"{sum(n for _, n in report.hospitals):,}", style="bold")
    out.print(rows)
    where = Table.grid(padding=(0, 2))
    for label, path in report.paths.items():
        where.add_row(label, path)
    out.print(where)
