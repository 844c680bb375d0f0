"""The checks every fault scenario ends with: the three tables, their timelines and the ledger, against what the
landed files should produce (`Expected`). Every broken invariant is collected, then the check fails once naming
them all (ids, files, counts only)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from streaming.lakehouse.hudi import HudiWriter, TableSpec

from .expected import Expected
from .landing import Landing
from .ledger_views import LedgerView
from .tables import read_rows, tables
from .text import few


def check_invariants(spark: Any, warehouse: Path, landing: Landing, ledger: LedgerView, context: str) -> Expected:
    """Every invariant of exactly-once ingestion, against expectations computed from the landed files."""
    exp = landing.expected()
    specs = tables(warehouse)
    problems: list[str] = []
    newest = exp.newest
    bronze = read_rows(spark, specs["bronze"], ["encounter_id", "sourcename", "source_position", "is_deleted"])
    problems += _bronze_problems(bronze, newest)
    if wrong := {r["encounter_id"] for r in bronze if r["is_deleted"]} ^ exp.deleted:
        problems.append(f"bronze: {len(wrong)} ids deleted that should not be, or not deleted: {few(wrong)}")
    columns = ["batch_key", "files", "rows_written", "rows_stale", "rows_rejected", "commit_instant"]
    log = read_rows(spark, specs["log"], columns)
    problems += _log_problems(log, exp)
    problems += _timeline_problems(spark, specs["bronze"], log)
    quarantine = read_rows(spark, specs["quarantine"], ["sourcename", "source_position"])
    problems += _quarantine_problems(quarantine, exp)
    problems += _ledger_problems(ledger, exp)

    # timelines: nothing left inflight or requested.
    writer = HudiWriter(spark)
    for name, spec in specs.items():
        if pending := writer.inflight(spec):
            problems.append(f"{name}: instants left inflight: {pending}")

    summary = (
        f"{len(exp.files)} files, {len(exp.valid)} valid records of {len(newest)} ids, {len(exp.invalid)} bad;"
        f" bronze {len(bronze)} rows, log {len(log)} batches, quarantine {len(quarantine)} rows"
    )
    assert not problems, f"{context}: invariants broken ({summary}):\n- " + "\n- ".join(problems)
    return exp


def _bronze_problems(bronze: list[dict[str, Any]], newest: dict[str, tuple[str, str]]) -> list[str]:
    """bronze: one row per distinct encounter id, and it is the newest version."""
    problems: list[str] = []
    counts = Counter(r["encounter_id"] for r in bronze)
    if dup := [i for i, c in counts.items() if c > 1]:
        problems.append(f"bronze: {len(dup)} ids more than once: {few(dup)}")
    if missing := newest.keys() - counts.keys():
        problems.append(f"bronze: {len(missing)} of {len(newest)} ids missing: {few(missing)}")
    if extra := counts.keys() - newest.keys():
        problems.append(f"bronze: {len(extra)} ids not in the input: {few(extra)}")
    stale = {
        r["encounter_id"]: f"{Path(r['sourcename']).name} {r['source_position']}"
        for r in bronze
        if r["encounter_id"] in newest and (r["sourcename"], r["source_position"]) != newest[r["encounter_id"]]
    }
    if stale:
        want = {i: f"{Path(newest[i][0]).name} {newest[i][1]}" for i in stale}
        problems.append(
            f"bronze: {len(stale)} ids hold an older version: {few(stale.items())}, newest: {few(want.items())}"
        )
    return problems


def _log_problems(log: list[dict[str, Any]], exp: Expected) -> list[str]:
    """ingest log: every file exactly once across the rows' `files`; row sums match the input."""
    problems: list[str] = []
    logged = Counter(f for r in log for f in r["files"] or [])
    if twice := [f for f, c in logged.items() if c > 1]:
        problems.append(f"ingest log: {len(twice)} files in more than one batch: {few(Path(f).name for f in twice)}")
    if unlogged := exp.files - logged.keys():
        problems.append(f"ingest log: {len(unlogged)} files never logged: {few(Path(f).name for f in unlogged)}")
    if foreign := logged.keys() - exp.files:
        problems.append(f"ingest log: {len(foreign)} files not landed by the test: {few(foreign)}")
    # A version older than the table's (a file re-read after a newer one) is counted stale, not written; a batch
    # finished by recovery has rows_stale NULL and counted it written.
    written = sum((r["rows_written"] or 0) + (r["rows_stale"] or 0) for r in log)
    if written != len(exp.valid):
        problems.append(
            f"ingest log: rows_written + rows_stale sum to {written}, the input has {len(exp.valid)} valid Encounters"
        )
    rejected = sum(r["rows_rejected"] or 0 for r in log)
    if rejected != len(exp.invalid):
        problems.append(f"ingest log: rows_rejected sums to {rejected}, the input has {len(exp.invalid)} bad records")
    return problems


def _timeline_problems(spark: Any, bronze_spec: TableSpec, log: list[dict[str, Any]]) -> list[str]:
    """bronze timeline: each completed commit belongs to one logged batch, and no batch wrote twice.

    A batch that wrote but was taken for "wrote nothing" would be written again by its replay: same rows, a second
    commit.
    """
    problems: list[str] = []
    logged_instant = {r["batch_key"]: r["commit_instant"] for r in log}
    # Clustering commits (a table service, layout.cluster_every_seconds) rewrite files and belong to no batch.
    commits = [c for c in HudiWriter(spark).commits(bronze_spec, newest=10_000) if c.operation != "cluster"]
    keys = Counter(c.batch_key for c in commits)
    if twice := [k for k, c in keys.items() if c > 1]:
        problems.append(f"bronze timeline: batches committed more than once: {few(twice)}")
    if orphans := [c.instant for c in commits if c.batch_key not in logged_instant]:
        problems.append(f"bronze timeline: commits of no logged batch: {few(orphans)}")
    if wrong := [c.instant for c in commits if logged_instant.get(c.batch_key, c.instant) != c.instant]:
        problems.append(f"bronze timeline: commits whose log row names another instant: {few(wrong)}")
    return problems


def _quarantine_problems(quarantine: list[dict[str, Any]], exp: Expected) -> list[str]:
    """quarantine: the bad records, once each."""
    got = Counter((r["sourcename"], r["source_position"]) for r in quarantine)
    want_bad = Counter((r.uri, r.position) for r in exp.invalid)
    if got == want_bad:
        return []
    show = lambda c: few(f"{Path(u).name} {p} x{n}" for (u, p), n in c.items())  # noqa: E731
    return [f"quarantine: unexpected {show(got - want_bad)}; missing {show(want_bad - got)}"]


def _ledger_problems(ledger: LedgerView, exp: Expected) -> list[str]:
    """ledger: every file committed (once: it is the store's key), nothing else, no intent left open."""
    problems: list[str] = []
    committed = ledger.committed(exp.files)
    if uncommitted := exp.files - committed:
        problems.append(f"ledger: {len(uncommitted)} files not committed: {few(Path(f).name for f in uncommitted)}")
    every = ledger.all_committed()
    if every is not None:
        if twice := [f for f, c in every.items() if c > 1]:
            problems.append(f"ledger: files committed more than once: {few(twice)}")
        if foreign := every.keys() - exp.files:
            problems.append(f"ledger: {len(foreign)} committed files not landed by the test: {few(foreign)}")
    if intents := ledger.open_intents():
        problems.append(f"ledger: batch intents still open: {few(intents)}")
    return problems
