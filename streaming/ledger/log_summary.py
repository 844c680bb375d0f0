"""What a committed batch's ingest-log row says beyond its intent, as the ledger keeps it until the row is written.

The ledger commit of a batch carries this summary (`Ledger.commit(..., summary=)`); the ingest log is written
later, rows of several batches together (pipeline/ingest_log.py `write_log`), and `status` reads the waiting ones here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streaming.ledger.base import BatchIntent


@dataclass(frozen=True)
class LogSummary:
    """The batch's counts and times; its key, run, batch id, files and start are in its intent."""

    files_already_committed: int
    stats: Mapping[str, int | None] = field(default_factory=dict)  # the batch's counts (BatchStats), by name
    ended_at: datetime | None = None  # when the ledger committed it
    commit_instant: str | None = None  # its bronze commit, if it wrote one
    lag_seconds: float | None = None  # oldest file's modification -> commit; not known when recovery finished it

    def to_json(self) -> str:
        return json.dumps(
            {
                "files_already_committed": self.files_already_committed,
                "stats": dict(self.stats),
                "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
                "commit_instant": self.commit_instant,
                "lag_seconds": self.lag_seconds,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LogSummary:
        said = json.loads(text)
        ended = said.get("ended_at")
        return cls(
            files_already_committed=int(said.get("files_already_committed") or 0),
            stats=dict(said.get("stats") or {}),
            ended_at=None if ended is None else datetime.fromisoformat(ended),
            commit_instant=said.get("commit_instant"),
            lag_seconds=said.get("lag_seconds"),
        )

    def row(self, intent: BatchIntent) -> dict[str, Any]:
        """The batch's ingest-log row: its intent's key, run, batch id, files and start, and this summary."""
        return {
            "batch_key": intent.batch_key,
            "run_id": intent.run_id,
            "batch_id": intent.batch_id,
            "files": list(intent.files),
            "file_count": len(intent.files),
            "files_already_committed": self.files_already_committed,
            **self.stats,
            "started_at": intent.started_at,
            "ended_at": self.ended_at,
            "commit_instant": self.commit_instant,
            "lag_seconds": self.lag_seconds,
        }
