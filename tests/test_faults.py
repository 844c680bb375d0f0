"""Restart-safe exactly-once, proven by killing the real job (see tests/harness/ for how).

Every scenario runs `python -m streaming.cli run` as separate processes, kills or disturbs them, starts them
again and then checks the invariants against expectations computed from the landed files. What recovery did is
read from what the job recorded (ledger, ingest log, bronze timeline, the JSON line per batch), never from the
wording of its log:

- every named kill point (streaming.pipeline.batch.STEPS; tests/harness/faults.py is the job's hook there), chained in
  one warehouse, then a deleted checkpoint;
- SIGKILLs at seeded random moments of a continuous run over >= 50 files, at least one inside a batch,
  converging to the same table as one uninterrupted `--once` run (BRONZE_FAULT_SEED=<n> replays the delays of a
  failed run);
- one continuous job on the DynamoDB ledger (through a TCP proxy in front of moto, its items read straight from
  moto): a second writer refused by the lease, a ledger outage of >= 30 s waited out, and SIGTERM, heard while a
  batch is in flight, finishing that batch.

Each scenario prints its timings (`pytest -s`); the assertion messages carry ids, files and counts only.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import (
    ABANDONED,
    COMMITTED,
    CONTINUOUS_SETTINGS,
    EXIT_LEASE,
    FINISHED,
    KILLED,
    CrashedBatch,
    DynamoLedgerView,
    Job,
    JobProcess,
    Landing,
    LedgerView,
    SqliteLedgerView,
    Stopwatch,
    TcpProxy,
    bronze_instants,
    business_rows,
    check_invariants,
    compare_business_rows,
    crashed_batch,
    fate,
    file_uri,
    left_inflight,
    open_batch,
    read_rows,
    replay_found_committed,
    tables,
    timeline,
    wait_all_committed,
    wait_until,
)
from harness.faults import POINTS

from streaming.generate import generate

pytestmark = pytest.mark.job  # the harness runs and kills the job in other processes

# The fate of the batch a kill at each point interrupted (harness/recovery.py): abandoned by the restart's recovery
# (nothing of it counted; its files ingested again), finished by it from what Hudi had, or committed before the
# kill (the restart's replay of its batch id finds every file committed).
AFTER_KILL_AT = {
    "after_intent": ABANDONED,
    "after_read": ABANDONED,
    "after_quarantine": ABANDONED,
    "after_bronze": FINISHED,
    "after_ledger": COMMITTED,  # its log row waits in the ledger: the restart's recovery writes it
    "after_log_written": COMMITTED,  # its log row is written, the ledger not told: the recovery writes it again
    "after_ingest_log": COMMITTED,
    "after_upkeep": COMMITTED,
}
# Every batch writes the ingest log (each kill point is reached in the batch it is aimed at); the random kills run
# with the log written every third batch, so kills also land with rows waiting.
EVERY_BATCH_LOGS = {"ingest_log.every_batches": "1"}
LOSE_CHECKPOINT_AT = "after_upkeep"  # the last point: its batch is committed, Spark's checkpoint not yet
BEFORE_LOSS = POINTS[POINTS.index(LOSE_CHECKPOINT_AT) - 1]  # the replay of its batch is lost with the checkpoint
WAIT = 420  # seconds any single job process may take (a loaded 2-core runner starts a JVM slowly)
# SIGTERM: its handler sets the job's stop at once (a blocking call is interrupted for it, PEP 475); a batch still
# open this long after the signal was in flight when the job heard it. Tries before the scenario fails.
STOP_HEARD = 1.0
SIGTERM_ATTEMPTS = 3


def sqlite_ledger(warehouse: Path) -> SqliteLedgerView:
    return SqliteLedgerView(warehouse / "_ledger" / "ledger.sqlite3")


def test_every_named_kill_point_recovers_and_a_lost_checkpoint_reingests_nothing(spark: Any, tmp_path: Path) -> None:
    """Kill at each named point in turn, one restart recovering the crash before it, each restart with new files.

    Between the kill before the last point and the next start the checkpoint is deleted: the restart re-lists
    every file, the ledger skips the committed ones, and only the new files are written.
    """
    assert set(AFTER_KILL_AT) == set(POINTS)
    clock = Stopwatch()
    landing = Landing(tmp_path / "landing")
    warehouse = tmp_path / "warehouse"
    ledger = sqlite_ledger(warehouse)

    w0 = landing.generated("w0", files=4, per_file=3, seed=101)  # the 4th file is one pretty .json resource
    base0 = landing.encounters(w0)
    landing.bad_lines("w0/bad-w0.ndjson", base0[0])  # rejects in the first batch: after_quarantine has work
    land = _KillPointWaves(landing, base0).land

    new_since_loss: list[Path] = []
    crashed: dict[str, CrashedBatch] = {}  # kill point -> the batch that kill interrupted, as the ledger showed it
    replayed: dict[str, bool] = {}  # kill point -> the next run's replay of that batch found every file committed

    def restarted_after(point: str, proc: JobProcess) -> None:
        """The run after a kill at `point` closed the batch that kill interrupted (and replayed it, if done)."""
        batch = crashed[point]
        assert batch.key not in ledger.open_intents(), f"restart after a kill at {point} left it open\n{proc.tail()}"
        if batch.committed and point != BEFORE_LOSS:  # that replay is gone with the checkpoint
            replayed[point] = replay_found_committed(proc, batch)
            lines = proc.batch_lines()
            assert replayed[point], f"no replay of batch {batch.batch_id} found its {len(batch.files)} files: {lines}"

    with Job(tmp_path, landing.root, warehouse, settings=EVERY_BATCH_LOGS) as job:
        previous = None
        for step, point in enumerate(POINTS):
            if point == LOSE_CHECKPOINT_AT:  # lose the checkpoint; remember what was committed before
                before_loss = _BeforeLoss.of(spark, warehouse, landing, ledger)
                shutil.rmtree(warehouse / "_checkpoints")
                clock.mark("checkpoint deleted")
            landed = land(step)
            if point == LOSE_CHECKPOINT_AT:
                new_since_loss += landed
            proc = job.run(f"kill-{point}", kill_at=point, timeout=WAIT)
            clock.mark(f"killed at {point}")
            assert proc.returncode == KILLED, f"the job was not killed at {point}\n{proc.tail()}"
            if previous:
                restarted_after(previous, proc)
            crashed[point] = crashed_batch(ledger)
            previous = point
        new_since_loss += land(len(POINTS))
        final = job.run("final", timeout=WAIT)
        clock.mark("final --once")
        assert final.returncode == 0, final.tail()
        assert previous is not None
        restarted_after(previous, final)

    check_invariants(spark, warehouse, landing, ledger, f"after every named kill point ({clock})")

    # Each kill's batch ended as its kill point says, and nothing of any of them is half counted.
    fates = {point: fate(spark, warehouse, ledger, batch) for point, batch in crashed.items()}
    assert fates == AFTER_KILL_AT, f"what became of each killed batch: {fates}"
    committed = {p: True for p, outcome in AFTER_KILL_AT.items() if outcome == COMMITTED and p != BEFORE_LOSS}
    assert replayed == committed, f"replays of batches committed before the kill: {replayed}"

    _check_since_loss(spark, warehouse, landing, before_loss, new_since_loss)
    print(f"named kill points + checkpoint loss: {clock}")


class _KillPointWaves:
    """The new files landed before each start of the named-kill-point scenario (`land(step)`): new encounters,
    newer versions, late older versions, bad records."""

    def __init__(self, landing: Landing, base0: list[dict[str, Any]]) -> None:
        self.landing, self.base0 = landing, base0
        self.w2: list[dict[str, Any]] = []
        self.steps: dict[int, Callable[[], list[Path]]] = {
            1: self._w1,
            2: self._w2,
            3: self._w3,
            4: self._w4,
            5: self._w5,
            6: self._w6,
            7: self._w6b,
            8: self._w7,
        }

    def land(self, step: int) -> list[Path]:
        wave = self.steps.get(step)
        return wave() if wave is not None else []

    def _w1(self) -> list[Path]:
        return [
            *self.landing.generated("w1", files=2, per_file=3, seed=102),
            self.landing.versions("w1/newer-w1.ndjson", self.base0[1:5], shift=timedelta(days=2), status="cancelled"),
        ]

    def _w2(self) -> list[Path]:
        files = self.landing.generated("w2", files=2, per_file=3, seed=103)
        self.w2 = self.landing.encounters(files)
        return [*files, self.landing.bad_file("w2/not-json-w2.json")]

    def _w3(self) -> list[Path]:  # late: older than the originals, landing after the newer versions
        return [
            *self.landing.generated("w3", files=1, per_file=3, seed=104),
            self.landing.versions(
                "w3/late-w3.ndjson", self.base0[1:5], shift=-timedelta(days=1), status="entered-in-error"
            ),
        ]

    def _w4(self) -> list[Path]:
        return [
            *self.landing.generated("w4", files=1, per_file=3, seed=105),
            self.landing.versions("w4/newer-w4.ndjson", self.w2[:3], shift=timedelta(days=3), status="cancelled"),
        ]

    def _w5(self) -> list[Path]:  # newer than the originals, older than w4's versions: late, must not win either
        return [
            *self.landing.generated("w5", files=1, per_file=3, seed=106),
            self.landing.versions("w5/late-w5.ndjson", self.w2[:3], shift=timedelta(days=1), status="finished"),
        ]

    def _w6(self) -> list[Path]:
        fresh = self.landing.generated("w6", files=1, per_file=3, seed=107)
        return [
            *fresh,
            self.landing.bad_lines("w6/bad-w6.ndjson", self.landing.encounters(fresh)[0]),
            self.landing.versions("w6/newer-w6.ndjson", self.base0[5:7], shift=timedelta(days=5), status="cancelled"),
        ]

    def _w6b(self) -> list[Path]:
        return self.landing.generated("w6b", files=1, per_file=3, seed=109)

    def _w7(self) -> list[Path]:  # the final run's: new files after the lost checkpoint
        return self.landing.generated("w7", files=1, per_file=3, seed=108)


@dataclass(frozen=True)
class _BeforeLoss:
    """What was committed when the checkpoint was lost: files, bronze instants and rows, log batches, quarantine."""

    files: set[str]
    instants: list[str]
    rows: dict[str, str]
    log: set[str]
    quarantine: list[dict[str, Any]]

    @classmethod
    def of(cls, spark: Any, warehouse: Path, landing: Landing, ledger: SqliteLedgerView) -> _BeforeLoss:
        specs = tables(warehouse)
        old_files = ledger.committed(landing.expected().files)
        assert old_files == landing.expected().files, "a kill after the ledger commit lost a commit"
        old_instants = bronze_instants(spark, warehouse)
        old_rows = {
            r["encounter_id"]: r["_hoodie_commit_time"]
            for r in read_rows(spark, specs["bronze"], ["encounter_id", "_hoodie_commit_time"])
        }
        old_log = {r["batch_key"] for r in read_rows(spark, specs["log"], ["batch_key"])}
        old_quarantine = read_rows(spark, specs["quarantine"], ["quarantine_id", "_hoodie_commit_time"])
        return cls(old_files, old_instants, old_rows, old_log, old_quarantine)


def _check_since_loss(
    spark: Any, warehouse: Path, landing: Landing, before: _BeforeLoss, new_since_loss: list[Path]
) -> None:
    """Only the files landed since the checkpoint loss were written; nothing committed before was rewritten."""
    specs = tables(warehouse)
    # Since the checkpoint was lost: batches of the new files only, the old ones skipped by the ledger...
    columns = ["batch_key", "files", "files_already_committed", "commit_instant"]
    new_log = [r for r in read_rows(spark, specs["log"], columns) if r["batch_key"] not in before.log]
    assert sorted(f for r in new_log for f in r["files"]) == sorted(file_uri(p) for p in new_since_loss)
    assert max(r["files_already_committed"] for r in new_log) == len(before.files), "re-listed old files not skipped"
    # ...the bronze timeline grew by exactly those batches' commits...
    instants = bronze_instants(spark, warehouse)
    assert instants[: len(before.instants)] == before.instants
    assert sorted(instants[len(before.instants) :]) == sorted(r["commit_instant"] for r in new_log)
    # ...and no row the new files do not touch was rewritten, nor any old quarantine row.
    touched = {e["id"] for e in landing.encounters(new_since_loss)}
    rows = read_rows(spark, specs["bronze"], ["encounter_id", "_hoodie_commit_time"])
    rewritten = [
        r["encounter_id"]
        for r in rows
        if r["encounter_id"] in before.rows
        and r["encounter_id"] not in touched
        and r["_hoodie_commit_time"] != before.rows[r["encounter_id"]]
    ]
    assert not rewritten, f"{len(rewritten)} old rows were rewritten after the checkpoint loss: {sorted(rewritten)[:5]}"
    quarantine = {
        r["quarantine_id"]: r["_hoodie_commit_time"]
        for r in read_rows(spark, specs["quarantine"], ["quarantine_id", "_hoodie_commit_time"])
    }
    changed = [
        r["quarantine_id"][:12]
        for r in before.quarantine
        if quarantine.get(r["quarantine_id"]) != r["_hoodie_commit_time"]
    ]
    assert not changed, f"old quarantine rows rewritten after the checkpoint loss: {changed}"


def _wait_for_new_batch(ledger: SqliteLedgerView, seen: set[str], proc: Any, timeout: float) -> set[str]:
    """Wait until the job has a batch in flight (an open intent not seen before); fail if the job died."""

    def check() -> set[str]:
        assert proc.alive(), f"the continuous job ended by itself\n{proc.tail()}"
        return ledger.open_intents() - seen

    return wait_until("a batch in flight", check, timeout, every=0.1, detail=proc.tail)


def _wait_for_batch_end(ledger: SqliteLedgerView, batch: set[str], proc: Any, timeout: float) -> None:
    """Wait until the batch's intent is closed (its files committed)."""

    def check() -> bool:
        assert proc.alive(), f"the continuous job ended by itself\n{proc.tail()}"
        return not (ledger.open_intents() & batch)

    wait_until("the batch to commit", check, timeout, every=0.1, detail=proc.tail)


def _batches_run(proc: JobProcess) -> str:
    """What a run's JSON lines say it did: batches that took files, replays that found every file committed."""
    lines = proc.batch_lines()
    took = sum(1 for line in lines if line["files"])
    skipped = sum(1 for line in lines if not line["files"] and line["files_already_committed"])
    return f"{proc.label}: {took} batches took files, {skipped} replays found them committed"


def test_random_kills_converge_to_one_uninterrupted_run(spark: Any, tmp_path: Path) -> None:
    seed = int(os.environ.get("BRONZE_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    rng = random.Random(seed)
    replay = f"seed {seed} (replay: BRONZE_FAULT_SEED={seed})"
    print(f"random kills: {replay}")
    clock = Stopwatch()
    landing = Landing(tmp_path / "landing")
    warehouse, reference = tmp_path / "warehouse", tmp_path / "reference"
    ledger = sqlite_ledger(warehouse)

    # 46 generated files + 4 of ours = 50, in three waves; the last wave is the largest, so the third run still
    # has several batches to do however fast the first two were.
    staged = list(generate(tmp_path / "staged", files=46, per_file=3, seed=201).files)
    first = landing.move_in(staged[:15], "a")
    base = landing.encounters(first)
    landing.bad_lines("a/bad-a.ndjson", base[0])

    kills: list[str] = []
    interrupted: list[CrashedBatch] = []  # batches left open by a kill (one may fall between batches, or stay open
    # through a second kill that lands before the next start recovered it)
    seen: set[str] = set()
    with (
        Job(
            tmp_path, landing.root, warehouse, settings={**CONTINUOUS_SETTINGS, "ingest_log.every_batches": "3"}
        ) as job,
        Job(tmp_path / "ref", landing.root, reference) as uninterrupted,
    ):
        ref = None
        for k in range(3):
            seen |= ledger.open_intents()  # a killed run's open intent is not a new batch
            proc = job.start(f"continuous-{k}", once=False)
            # Waits until the moment to kill; `seen` (updated in place) takes the batches it saw start.
            where = _kill_moment(k, rng, ledger, seen, proc, bool(interrupted))
            assert proc.alive(), f"{replay}: the continuous job ended by itself\n{proc.tail()}"
            code, kill = _kill(proc, ledger, landing, warehouse, where, interrupted)
            kills.append(kill)
            clock.mark(f"kill {k}: {kills[-1]}")
            assert code == KILLED, f"{replay}: {proc.tail()}"
            _land_random_kills_wave(landing, staged, base, k + 1)
            if k == 1:  # every file has landed: the reference run can go, beside the faulty one
                ref = uninterrupted.start("reference", once=True)

        final = job.start("continuous-final", once=False)
        expected = landing.expected().files
        wait_all_committed("every file committed", final, ledger, expected, WAIT)
        clock.mark("converged")
        final.terminate()
        assert final.wait(WAIT) == 0, f"{replay}: SIGTERM must stop the job cleanly\n{final.tail()}"
        assert ref is not None
        assert ref.wait(WAIT) == 0, ref.tail()
        clock.mark("stopped; reference done")

    restarts = [_batches_run(p) for p in job.processes[1:]]
    context = f"{replay}, kills: {kills}, restarts: {restarts}"
    assert interrupted, f"{context}: no kill landed inside a batch"
    check_invariants(spark, warehouse, landing, ledger, f"killed run, {context}")
    # Every batch a kill interrupted was abandoned or finished by the next start, never half counted.
    fates = {b.key: fate(spark, warehouse, ledger, b, context) for b in interrupted}
    context += f", fates: {fates}"
    check_invariants(spark, reference, landing, sqlite_ledger(reference), "uninterrupted reference run")
    problems = compare_business_rows(business_rows(spark, warehouse), business_rows(spark, reference))
    assert not problems, f"{context}: killed run differs from the uninterrupted one: {problems}"
    print(f"random kills ({context}): {clock}")


def _kill(
    proc: JobProcess,
    ledger: SqliteLedgerView,
    landing: Landing,
    warehouse: Path,
    where: str,
    interrupted: list[CrashedBatch],
) -> tuple[int, str]:
    """SIGKILL the job: its exit code and what the kill hit; a batch it left open is added to `interrupted`."""
    code = proc.kill()
    done = len(ledger.all_committed())
    if (cut := open_batch(ledger)) is not None:
        interrupted.append(cut)
    inside = f"batch {cut.key} open" if cut else "no batch open"
    kill = f"{where}, {inside} ({done}/{len(landing.files)} files committed, inflight: {left_inflight(warehouse)})"
    return code, kill


def _land_random_kills_wave(landing: Landing, staged: list[Path], base: list[dict[str, Any]], wave: int) -> None:
    """The random-kills scenario's waves after the first: the rest of the staged files, newer and late versions."""
    if wave == 1:
        landing.move_in(staged[15:30], "b")
        landing.versions("b/newer-b.ndjson", base[1:7], shift=timedelta(days=2), status="cancelled")
    elif wave == 2:
        landing.move_in(staged[30:], "c")
        landing.versions("c/late-c.ndjson", base[1:7], shift=-timedelta(hours=6), status="entered-in-error")
        landing.bad_file("c/not-json-c.json")
        # DELETEs newer than every version (so they win in any batch order), of encounters no other file re-sends,
        # and of one the table never held: the batch reads their stored versions (HudiWriter.read_keys).
        newest = max(datetime.fromisoformat(e["meta"]["lastUpdated"]) for e in base)
        gone = [e["id"] for e in base[8:10]] + ["fault-never-seen"]
        landing.deletes("c/deletes-c.json", gone, at=newest + timedelta(days=30))


def _kill_moment(
    k: int, rng: random.Random, ledger: SqliteLedgerView, seen: set[str], proc: JobProcess, interrupted: bool
) -> str:
    """Wait for the `k`th run's random kill moment; where it is, in words. `seen` grows by the batches waited for.

    `interrupted`: an earlier kill already landed inside a batch.
    """
    if k == 0:  # a moment of the first batch: in a new warehouse it creates the three tables
        seen |= _wait_for_new_batch(ledger, seen, proc, WAIT)
        delay = rng.uniform(0.0, 20.0)
        time.sleep(delay)
        return f"{delay:.1f}s into the first batch"
    if k == 1:  # any moment: JVM start, lease wait, recovery or a batch
        delay = rng.uniform(2.0, 30.0)
        time.sleep(delay)
        return f"{delay:.1f}s after start"
    # A moment of a warm batch, scaled by the length of the one before it (the first one is slow).
    share = rng.uniform(0.0, 1.2)
    for _ in range(2):
        batch = _wait_for_new_batch(ledger, seen, proc, WAIT)
        seen |= batch
        began = time.monotonic()
        _wait_for_batch_end(ledger, batch, proc, WAIT)
        length = time.monotonic() - began
    seen |= _wait_for_new_batch(ledger, seen, proc, WAIT)
    time.sleep(share * length)
    where = f"{share:.0%} of {length:.1f}s into the 3rd batch"
    if not interrupted and not ledger.open_intents():
        # No kill so far landed inside a batch, nor would this one: it moves into the next batch, so the scenario
        # tests what it is named for (recovering a batch a kill cut short), or fails.
        seen |= _wait_for_new_batch(ledger, seen, proc, WAIT)
        where += ", after its end: moved to the start of the next batch"
    return where


def _checkpoint_settled(warehouse: Path) -> bool:
    """The stream's last batch is committed in the checkpoint (commits/ caught up with offsets/)."""
    root = warehouse / "_checkpoints" / "bronze_encounter"
    offsets = {p.name for p in (root / "offsets").glob("[0-9]*")}
    commits = {p.name for p in (root / "commits").glob("[0-9]*")}
    return bool(offsets) and offsets == commits


def _state(warehouse: Path, ledger: LedgerView, files: frozenset[str]) -> dict[str, Any]:
    """What a writer could change: the three timelines, the ledger's files and intents, the checkpoint.

    The checkpoint's temporary files (`.0.<uuid>.tmp`, `..0.<uuid>.tmp.crc`) are left out: a running writer creates
    and renames them on its own, so they say nothing about who wrote what.
    """
    root = warehouse / "_checkpoints" / "bronze_encounter"
    return {
        **{name: timeline(spec) for name, spec in tables(warehouse).items()},
        "ledger": sorted(ledger.committed(files)),
        "intents": sorted(ledger.open_intents()),
        "checkpoint": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".tmp" not in p.name),
    }


def _idle_state(proc: JobProcess, warehouse: Path, ledger: LedgerView, files: frozenset[str]) -> dict[str, Any]:
    """The state once the running job `proc` is idle: every file committed in the ledger and the checkpoint, no
    intent open, and nothing changed over two trigger intervals. Only then can a later change be blamed on another
    process."""
    previous: dict[str, Any] = {}

    def settled() -> dict[str, Any] | None:
        nonlocal previous
        if not (proc.alive() and ledger.committed(files) == files and _checkpoint_settled(warehouse)):
            return None
        state = _state(warehouse, ledger, files)
        stable = not state["intents"] and state == previous
        previous = state
        return state if stable else None

    return wait_until(f"{proc.label} idle", settled, WAIT, every=2.5, detail=proc.tail)


def test_second_writer_ledger_outage_and_sigterm(spark: Any, tmp_path: Path, aws_env: str, unique_name: str) -> None:
    """One continuous job on the DynamoDB ledger: a second writer is refused, a >= 30 s ledger outage is waited
    out, and SIGTERM lets the batch in flight finish."""
    from aws_fixtures import create_ledger_table

    clock = Stopwatch()
    create_ledger_table(unique_name)
    warehouse = tmp_path / "warehouse"
    ledger = DynamoLedgerView(unique_name, warehouse)  # reads moto directly; only the jobs go through the proxy
    proxy = TcpProxy.to(aws_env).start()
    landing = Landing(tmp_path / "landing")
    first = landing.generated("a", files=5, per_file=3, seed=401)
    landing.bad_lines("a/bad-a.ndjson", landing.encounters(first)[0])

    env = {"AWS_ENDPOINT_URL": aws_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url}
    args = ["--ledger-backend", "dynamodb", "--ledger-table", unique_name]
    # The running job renews a 30 s lease every 10 s; the second writer waits only 2 s for it.
    settings = {**CONTINUOUS_SETTINGS, "lease_ttl_seconds": "30"}
    try:
        with Job(tmp_path, landing.root, warehouse, settings=settings, args=args, env=env) as job:
            proc = job.start("continuous", once=False)
            files = landing.expected().files
            before = _idle_state(proc, warehouse, ledger, files)
            clock.mark("first files ingested")

            # A second writer on the same warehouse: refused with exit code 3 (another instance holds the lease),
            # nothing changed.
            second = job.run("second-writer", settings={"lease_wait_seconds": "2"}, timeout=WAIT)
            clock.mark("second writer refused")
            assert second.returncode == EXIT_LEASE, second.tail()
            assert proc.alive(), proc.tail()
            assert _state(warehouse, ledger, files) == before, "the refused writer changed tables, ledger or checkpoint"

            # Take the ledger away while a batch is in flight, and land more files during the outage: the job must
            # stay up, reach for the ledger meanwhile (its lease renewals alone do every 10 s) and, once it is back,
            # ingest everything exactly once.
            _ledger_outage(proc, ledger, landing, proxy, clock)

            # SIGTERM while a batch is in flight: the job finishes it, then exits 0. Only a signal the job heard
            # while the batch was still open tests that: the batch's intent must still be open STOP_HEARD after the
            # signal (the handler runs at once); otherwise the timing is tried again with a new wave, on a new job.
            _sigterm_during_a_batch(job, proc, ledger, landing, warehouse, tmp_path, clock)
    finally:
        proxy.close()

    check_invariants(spark, warehouse, landing, ledger, f"second writer, ledger outage, SIGTERM ({clock})")
    print(f"second writer, ledger outage, SIGTERM: {clock}")


def _ledger_outage(
    proc: JobProcess, ledger: DynamoLedgerView, landing: Landing, proxy: TcpProxy, clock: Stopwatch
) -> None:
    """The ledger taken away (>= 30 s) while a batch is in flight, files landing meanwhile; all committed after."""
    seen = ledger.open_intents()
    landing.generated("b", files=4, per_file=3, seed=402)
    wait_until("a batch in flight", lambda: ledger.open_intents() - seen, WAIT, every=0.05, detail=proc.tail)
    proxy.pause()
    outage = time.monotonic()
    clock.mark("ledger down")
    landing.generated("c", files=3, per_file=3, seed=403)
    landing.bad_file("c/not-json-c.json")
    while time.monotonic() - outage < 32:
        assert proc.alive(), f"the job died during the ledger outage\n{proc.tail()}"
        time.sleep(1)
    proxy.resume()
    clock.mark(f"ledger back; {proxy.refused} ledger connections refused meanwhile")
    assert proxy.refused > 0, f"the job never reached for the ledger during the outage\n{proc.tail()}"
    files = landing.expected().files
    wait_all_committed("every file committed after the outage", proc, ledger, files, WAIT)
    clock.mark(f"caught up; {_batches_run(proc)}")


def _sigterm_during_a_batch(
    job: Job,
    proc: JobProcess,
    ledger: DynamoLedgerView,
    landing: Landing,
    warehouse: Path,
    tmp_path: Path,
    clock: Stopwatch,
) -> None:
    """SIGTERM heard while a batch is open: the job finishes the batch and exits 0 (tried SIGTERM_ATTEMPTS times)."""
    for attempt in range(SIGTERM_ATTEMPTS):
        seen = ledger.open_intents()
        wave = f"d{attempt}"
        staged = Landing(tmp_path / f"staged-{attempt}")  # one rename lands them: a single batch (max 5)
        staged.generated(wave, files=4, per_file=3, seed=404 + attempt)
        staged.bad_file(f"{wave}/not-json-{wave}.json")
        uris = {file_uri(p) for p in landing.adopt(staged, wave)}
        batch = wait_until(
            "the next batch",
            lambda seen=seen, uris=uris: (
                (ledger.open_intents() - seen) or (ledger.committed(uris) == uris and {"done"})
            ),
            WAIT,
            every=0.05,
            detail=proc.tail,
        )
        if batch == {"done"}:  # over before it was seen: land another wave on the same job
            clock.mark(f"attempt {attempt}: the batch was over before it was seen")
            continue
        proc.terminate()
        time.sleep(STOP_HEARD)
        in_flight = bool(ledger.open_intents() & batch)
        code = proc.wait(WAIT)
        clock.mark(f"attempt {attempt}: SIGTERM {'during' if in_flight else 'after'} a batch")
        assert code == 0, proc.tail()
        assert ledger.committed(uris) == uris, f"SIGTERM did not let the batch finish\n{proc.tail()}"
        assert not ledger.open_intents(), f"SIGTERM left the batch open\n{proc.tail()}"
        if in_flight:
            return
        proc = job.start(f"continuous-{attempt + 1}", once=False)  # the timing again, on a new job
        _idle_state(proc, warehouse, ledger, landing.expected().files)
    raise AssertionError(f"no SIGTERM of {SIGTERM_ATTEMPTS} landed inside a batch ({clock})")


def test_a_writer_frozen_past_its_lease_writes_nothing_after_another_took_over(spark: Any, tmp_path: Path) -> None:
    """Fencing: A freezes (SIGSTOP) mid-batch past its lease TTL; B takes over, recovers A's open batch and ingests
    everything; A, resumed (SIGCONT), must write nothing more and exit 3."""
    clock = Stopwatch()
    landing = Landing(tmp_path / "landing")
    warehouse = tmp_path / "warehouse"
    ledger = sqlite_ledger(warehouse)
    first = landing.generated("a", files=4, per_file=3, seed=501)
    landing.bad_lines("a/bad-a.ndjson", landing.encounters(first)[0])
    # A 6 s lease renewed every 2 s; B waits up to 60 s for it, so it takes over once A's lease runs out.
    settings = {**CONTINUOUS_SETTINGS, "lease_ttl_seconds": "6", "lease_wait_seconds": "60"}
    with Job(tmp_path, landing.root, warehouse, settings=settings) as job:
        stalled = job.start("stalled", once=False, kill_at="after_read", kill_flag=tmp_path / "froze", freeze=True)
        wait_until("A frozen mid-batch", stalled.frozen, WAIT, every=0.2, detail=stalled.tail)
        frozen = open_batch(ledger)
        assert frozen is not None, stalled.tail()
        clock.mark("A frozen after reading its first batch")

        taker = job.start("taker", once=False)
        files = landing.expected().files
        wait_all_committed("B ingests every file", taker, ledger, files, WAIT)
        clock.mark(f"B took over and caught up; {_batches_run(taker)}")
        assert fate(spark, warehouse, ledger, frozen) == ABANDONED, f"B did not abandon A's open batch\n{taker.tail()}"
        # B keeps running (it holds the lease while A resumes), idle: nothing new lands, so from here on a change
        # can only be A's.
        before = _idle_state(taker, warehouse, ledger, files)

        stalled.resume()
        code = stalled.wait(WAIT)
        clock.mark("A resumed and stopped")
        assert code == EXIT_LEASE, stalled.tail()  # the lease was taken over
        assert _state(warehouse, ledger, files) == before, "the stale writer changed tables, ledger or checkpoint"
        assert fate(spark, warehouse, ledger, frozen) == ABANDONED, "the stale writer counted its batch after all"

        taker.terminate()
        assert taker.wait(WAIT) == 0, taker.tail()
    check_invariants(spark, warehouse, landing, ledger, f"frozen writer ({clock})")
    print(f"frozen writer: {clock}")
