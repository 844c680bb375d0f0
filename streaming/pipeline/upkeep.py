"""Table services on the job's own clock, after a batch is committed: clustering and cleaning of bronze and of
every view's table, one a batch, best effort; and the clustering plans a crash left pending, run at recovery."""

from __future__ import annotations

import logging

from streaming.lakehouse.hudi import CLEAN, CLUSTERING, TableSpec, clustering_options
from streaming.ledger import LeaseLost
from streaming.pipeline.deps import BatchDeps

log = logging.getLogger(__name__)


def run_due(deps: BatchDeps, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Table services due after a committed batch, on the job's own clock: (the one run, or none; if it failed).

    Clustering and cleaning of bronze and of every view's table; one service a batch at most, the longest overdue,
    so they never stack in one batch and none starves. Best effort: the batch is committed, so a failing service
    must not stop ingestion; it is tried again at its next due time. Only a lost lease stops here, since nothing
    more may be written then.
    """
    layout = deps.config.layout
    every = {CLUSTERING: layout.cluster_every_seconds, CLEAN: layout.clean_every_seconds}
    tables = {spec.name: spec for spec in served(deps)}
    late = {
        (service, name): deps.writer.overdue(spec, service, seconds)
        for name, spec in tables.items()
        for service, seconds in every.items()
        if seconds
    }
    due = {pair: seconds for pair, seconds in late.items() if seconds is not None}
    if not due:
        return (), ()
    service, table = max(due, key=lambda pair: due[pair])  # the longest overdue
    spec = tables[table]
    # Bronze's services by their names (the metrics and the JSON line always had them); a view table's with it.
    name = service if table == deps.encounter.name else f"{service}:{table}"
    ok = _cluster(deps, key, spec) if service == CLUSTERING else _clean(deps, key, spec)
    return (name,), () if ok else (name,)


def served(deps: BatchDeps) -> tuple[TableSpec, ...]:
    """The tables whose services the job runs: bronze and every view's table (not the small log and quarantine)."""
    return (deps.encounter, *(view.spec for view in deps.views))


def _clean(deps: BatchDeps, key: str, spec: TableSpec) -> bool:
    """Clean a table's old file versions and archive its timeline; a failure is logged and tried again when due."""
    deps.fence()
    try:
        deleted = deps.writer.clean(spec)
    except Exception as exc:
        log.warning("batch %s: %s clean failed (%s); ingestion goes on", key, spec.name, type(exc).__name__)
        return False
    log.info("batch %s: %s cleaned (%d old file versions deleted)", key, spec.name, deleted)
    return True


def _cluster(deps: BatchDeps, key: str, spec: TableSpec) -> bool:
    """Cluster a table; on a failure take the plan back (Hudi refuses upserts into a pending plan's file groups)."""
    every = deps.config.layout.cluster_every_seconds
    deps.fence()
    try:
        clustered = deps.writer.cluster(spec, clustering_options(deps.config), schedule=True)
    except Exception as exc:
        rolled_back = _take_back_clustering(deps, spec)
        log.warning(
            "batch %s: %s clustering failed (%s); %d pending plan(s) rolled back, ingestion goes on and it is"
            " tried again in %ds",
            key,
            spec.name,
            type(exc).__name__,
            len(rolled_back),
            every,
        )
        return False
    log.info("batch %s: %s clustered (%d plan(s))", key, spec.name, len(clustered))
    return True


def _take_back_clustering(deps: BatchDeps, spec: TableSpec) -> list[str]:
    """Roll back the pending clustering plans after a failure; if even that fails, the next upsert says so."""
    try:
        deps.fence()
        return deps.writer.rollback_clustering(spec)
    except LeaseLost:
        raise
    except Exception as exc:
        log.error("%s clustering: rolling back the failed plan failed too (%s)", spec.name, type(exc).__name__)
        return []


def finish_clustering(deps: BatchDeps, spec: TableSpec) -> list[str]:
    """Run the clustering plans a crash left pending on a table (Hudi would refuse the next upserts into their
    files, see HudiWriter.cluster); roll them back if they fail. The plans finished."""
    pending = deps.writer.pending_clustering(spec)
    if not pending:
        return []
    deps.fence()
    try:
        deps.writer.cluster(spec, clustering_options(deps.config), schedule=False)
    except Exception as exc:  # a plan that fails every time must not keep the stream from starting
        deps.fence()
        deps.writer.rollback_clustering(spec)
        log.warning(
            "recovery: %d %s clustering plan(s) a crash left pending failed to run (%s); rolled back",
            len(pending),
            spec.name,
            type(exc).__name__,
        )
        return []
    log.warning("recovery: finished %d %s clustering plan(s) a crash left pending", len(pending), spec.name)
    return pending
