"""What became of a batch a crash interrupted, read from what the job recorded, never from its log wording.

A kill leaves at most one batch half done. Its fate is one of three, each a fixed shape of recorded state:

- ABANDONED: nothing of it counts. Its intent is closed, no ingest-log row and no bronze commit carry its key, and
  every one of its files was committed by another batch (the replay, or a re-listing, ingested them again).
- FINISHED: recovery completed it from what Hudi had. Its intent was open at the kill; now its ingest-log row
  lists exactly its files, the ledger committed each of them under its key, and its bronze commit (if it wrote
  rows) is the instant that row names.
- COMMITTED: it was done before the kill (the intent already closed); the same state as FINISHED, and a restart
  that replays its batch id from the checkpoint finds every file committed (`replay_found_committed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.lakehouse.hudi import HudiWriter

from .ledger_views import SqliteLedgerView
from .processes import JobProcess
from .tables import read_rows, tables
from .text import few

ABANDONED = "abandoned"
FINISHED = "finished by recovery"
COMMITTED = "committed before the kill"


@dataclass(frozen=True)
class CrashedBatch:
    """The batch a kill interrupted, as the ledger showed it right after the kill."""

    key: str
    files: frozenset[str]
    committed: bool  # its ledger commit happened before the kill

    @property
    def batch_id(self) -> int:
        """The stream's batch id: batch keys are `<run id>-<batch id, 6 digits>` (streaming/pipeline/batch.py)."""
        return int(self.key.rsplit("-", 1)[1])


def open_batch(ledger: SqliteLedgerView) -> CrashedBatch | None:
    """The batch a kill left open (its intent), if the kill landed inside one."""
    intents = ledger.intents()
    assert len(intents) <= 1, f"one writer leaves at most one batch open, found {few(intents)}"
    return next((CrashedBatch(key, files, committed=False) for key, files in intents.items()), None)


def crashed_batch(ledger: SqliteLedgerView) -> CrashedBatch:
    """The batch a kill inside a batch interrupted: the open intent, else the newest batch the killed run (the
    lease holder: a killed run never releases its lease) committed."""
    if (batch := open_batch(ledger)) is not None:
        return batch
    owner = ledger.lease_owner()
    assert owner, "no writer lease: the killed job never started"
    mine = {key: v for key, v in ledger.batches().items() if key.startswith(f"{owner}-")}
    assert mine, f"the killed run {owner} neither left a batch open nor committed one"
    key = max(mine, key=lambda k: mine[k][0])
    return CrashedBatch(key, mine[key][1], committed=True)


def fate(spark: Any, warehouse: Path, ledger: SqliteLedgerView, batch: CrashedBatch, context: str = "") -> str:
    """ABANDONED, FINISHED or COMMITTED, from the ledger, the ingest log and the bronze timeline; fails naming
    what does not fit when the recorded state is none of them (a batch half counted)."""
    specs = tables(warehouse)
    logged = [
        r
        for r in read_rows(spark, specs["log"], ["batch_key", "files", "commit_instant"])
        if r["batch_key"] == batch.key
    ]
    commits = [c.instant for c in HudiWriter(spark).commits(specs["bronze"], newest=10_000) if c.batch_key == batch.key]
    owners = ledger.batch_of(batch.files)
    problems = []
    if batch.key in ledger.open_intents():
        problems.append("its intent is still open")
    if not logged:
        if commits:
            problems.append(f"no ingest-log row, yet bronze commits {commits} carry its key")
        if uncommitted := batch.files - owners.keys():
            problems.append(f"{len(uncommitted)} of its files are committed by no batch")
        if mine := [f for f, key in owners.items() if key == batch.key]:
            problems.append(f"{len(mine)} of its files are committed under its own key")
        outcome = ABANDONED
    else:
        (row,) = logged  # the log's record key is the batch key
        if set(row["files"] or []) != batch.files:
            problems.append(f"its log row lists {len(row['files'] or [])} files, the batch had {len(batch.files)}")
        if others := {f for f in batch.files if owners.get(f) != batch.key}:
            problems.append(f"{len(others)} of its files are not committed under its key")
        if commits != ([row["commit_instant"]] if row["commit_instant"] else []):
            problems.append(f"bronze commits {commits} with its key, its log row names {row['commit_instant']}")
        outcome = COMMITTED if batch.committed else FINISHED
    assert not problems, f"{context}{': ' if context else ''}batch {batch.key} is half counted: " + "; ".join(problems)
    return outcome


def replay_found_committed(proc: JobProcess, batch: CrashedBatch) -> bool:
    """`proc` replayed the batch's id from the checkpoint and found every one of its files already committed.

    Its JSON line: no batch key and no file taken. The replay lists what the batch listed, which may include files
    committed by earlier batches (the batch itself wrote only the rest), so at least the batch's files count as
    already committed.
    """
    return any(
        line["batch_id"] == batch.batch_id
        and line["batch_key"] is None
        and line["files"] == 0
        and line["files_already_committed"] >= len(batch.files)
        for line in proc.batch_lines()
    )
