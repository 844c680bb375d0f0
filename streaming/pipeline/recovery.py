"""Recovery, before the stream starts: finish or abandon every batch a crash left half done, from what Hudi has.

An open intent with a bronze commit -> commit it in the ledger with a log summary made from the commit's
statistics; neither -> nothing of the batch counts: abandon the intent and let the replay (or a re-listing) ingest
the files again. (An ingest-log row present -> only the ledger commit is missing: the order of an earlier
release.) It then writes every waiting ingest-log row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streaming.lakehouse.hudi import BATCH_STATS
from streaming.pipeline.deps import BatchDeps, BatchStats
from streaming.pipeline.ingest_log import log_summary, write_log
from streaming.pipeline.upkeep import finish_clustering, served

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What `recover` did with each open intent."""

    finished: tuple[str, ...] = ()  # log row and/or ledger commit completed from what Hudi had
    abandoned: tuple[str, ...] = ()  # nothing committed: files will be ingested again
    clustered: tuple[str, ...] = ()  # bronze clustering plans a crash left pending, run to completion


def recover(deps: BatchDeps) -> Recovery:
    """Finish or abandon every batch a crash left half done; run before the stream starts."""
    clustered = [instant for spec in served(deps) for instant in finish_clustering(deps, spec)]
    finished, abandoned = [], []
    for intent in deps.ledger.open_intents():
        logged = deps.writer.find_commit(deps.ingest_log, intent.batch_key)
        if logged is None:
            commit = deps.writer.find_commit(deps.encounter, intent.batch_key)
            if commit is None:
                deps.ledger.abandon(intent.batch_key, deps.fence())
                abandoned.append(intent.batch_key)
                log.warning(
                    "recovery: batch %s wrote nothing; its %d files will be re-ingested",
                    intent.batch_key,
                    len(intent.files),
                )
                continue
            stats = BatchStats.from_json(commit.extra.get(BATCH_STATS, "{}"))
            ended = deps.clock()
            summary = log_summary(0, stats, commit.instant, ended, None)
            deps.ledger.commit(intent.batch_key, intent.files, ended, deps.fence(), summary=summary)
        else:  # a row an earlier release wrote before its ledger commit: only the commit is missing
            deps.ledger.commit(intent.batch_key, intent.files, deps.clock(), deps.fence())
        finished.append(intent.batch_key)
        log.warning(
            "recovery: batch %s was written; bookkeeping finished for %d files", intent.batch_key, len(intent.files)
        )
    waiting = write_log(deps)  # the rows a crash (or a stop before they were due) left waiting
    if waiting:
        log.info("recovery: wrote %d ingest-log row(s) waiting in the ledger", waiting)
    return Recovery(tuple(finished), tuple(abandoned), tuple(clustered))
