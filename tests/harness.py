"""Fault-injection harness: run the real job as a separate process, kill it, restart it, check the invariants.

- `Job` starts `python -m streaming.cli run ...` for one landing folder and warehouse, each process in its own
  process group (the Python driver, its Spark JVM and the JVM's Python workers), with stdout/stderr in files.
  `JobProcess.kill()` SIGKILLs the whole group, as a lost machine would; a named kill point (`kill_at`) makes the
  driver SIGKILL itself (streaming/faults.py) and the harness then removes what is left of the group.
- `Landing` writes the input: generated files plus newer versions, late older versions and bad records, all
  deterministic; `Landing.expected()` computes what the tables must hold from the files on disk alone.
- `check_invariants` compares the three Hudi tables, their timelines and the ledger with those expectations;
  `business_rows` / `compare_business_rows` compare two bronze tables column by column.
- `TcpProxy` stands between the job and the moto server so a test can take the DynamoDB ledger away and back.

Assertion messages name ids, files, positions and counts only, never record contents.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from streaming import config as conf
from streaming.flatten import BRONZE_COLUMNS
from streaming.generate import generate
from streaming.hudi import HudiWriter, TableSpec, encounter_table, ingest_log_table, quarantine_table
from streaming.identity import SEPARATOR, ScopedLedger

REPO = Path(__file__).resolve().parents[1]
KILLED = -signal.SIGKILL  # Popen.returncode of a process that died of SIGKILL
EXIT_LEASE = 3
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Settings every harness run uses: a dead holder's lease expires in 4 s and a restart waits up to 10 s for it.
RESTART_SETTINGS: dict[str, str] = {"lease_ttl_seconds": "4", "lease_wait_seconds": "10"}
CONTINUOUS_SETTINGS: dict[str, str] = {"trigger_interval": "1 second", "max_files_per_trigger": "5"}


def file_uri(path: Path) -> str:
    """A local file as Spark's file source names it (and so the ingest log, the ledger and `sourcename`)."""
    return f"file:{path.resolve()}"


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, *, every: float = 0.25, detail: Callable[[], str] | None = None
) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` (plus `detail()`) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(every)


# -- processes -------------------------------------------------------------------------------------------------


@dataclass
class JobProcess:
    """One started job process (leader of its own process group) and where its output goes."""

    label: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the job wrote to stderr (its Python log lines and Spark's warnings)."""
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def out(self) -> str:
        return self.stdout.read_text(errors="replace") if self.stdout.exists() else ""

    def tail(self, chars: int = 2500) -> str:
        """Last lines of stdout and stderr, for assertion messages (job logs hold counts and keys, no records)."""
        lines = [line for line in self.log().splitlines() if not line.lstrip().startswith("at ")]  # JVM frames
        err = "\n".join(lines)[-chars:]
        return (
            f"--- {self.label} (pid {self.pid}, rc {self.returncode}) stdout:\n{self.out()[-800:]}\n--- stderr:\n{err}"
        )

    def recovery(self) -> str:
        """What this run's start found of the crash before it, from its log: batches finished / abandoned."""
        log = self.log()
        finished, abandoned = log.count("was written; bookkeeping finished"), log.count("wrote nothing; its")
        replayed = log.count("all already committed; nothing to do")
        return f"{finished} finished, {abandoned} abandoned, {replayed} replays skipped"

    def wait(self, timeout: float) -> int:
        """Wait for the process to end; on timeout kill its group and fail with the output tails."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.label}: still running after {timeout:.0f}s\n{self.tail()}") from None
        self.reap_group()
        return code

    def kill(self) -> int:
        """SIGKILL the whole process group (driver, JVM, Python workers) at once: a crash, no cleanup."""
        self.reap_group()
        return self.popen.wait(30)

    def frozen(self) -> bool:
        """The driver is stopped (state T), as after SIGSTOP."""
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"
        except OSError:
            return False

    def resume(self) -> None:
        """SIGCONT the whole process group."""
        os.killpg(self.pid, signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM the driver only: the job stops after its current batch and exits 0."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def reap_group(self) -> None:
        """Remove whatever is left of the group (the JVM outlives a driver that killed itself by a moment)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class Job:
    """Starts the real job (`python -m streaming.cli run`) for one landing folder and warehouse.

    Every process it started is SIGKILLed by `close()` (use it as a context manager), so a failing test leaves
    no job running.
    """

    def __init__(
        self,
        workdir: Path,
        source: Path,
        warehouse: Path,
        *,
        settings: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir, self.source, self.warehouse = workdir, source, warehouse
        self.settings = {**RESTART_SETTINGS, **(settings or {})}
        self.args = list(args)
        self.env = dict(env or {})
        self.processes: list[JobProcess] = []
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, *, once: bool, settings: Mapping[str, str] | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "streaming.cli", "run", "--source", str(self.source)]
        cmd += ["--warehouse", str(self.warehouse), *self.args]
        for key, value in {**self.settings, **(settings or {})}.items():
            cmd += ["--set", f"{key}={value}"]
        return [*cmd, "--once"] if once else cmd

    def start(
        self,
        label: str,
        *,
        once: bool,
        kill_at: str | None = None,
        kill_flag: Path | None = None,
        freeze: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> JobProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRONZE_KILL_")}
        env.update(self.env)
        if kill_at:
            env["BRONZE_KILL_AT"] = kill_at
        if freeze:  # at kill_at the process group stops itself (SIGSTOP) instead of dying
            env["BRONZE_KILL_SIGNAL"] = "STOP"
        if kill_flag:
            env["BRONZE_KILL_FLAG"] = str(kill_flag)
        n = len(self.processes)
        out, err = self.logs / f"{n:02d}-{label}.out", self.logs / f"{n:02d}-{label}.err"
        with out.open("wb") as fout, err.open("wb") as ferr:
            popen = subprocess.Popen(
                self.command(once=once, settings=settings),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                start_new_session=True,  # own process group: kill() takes the JVM and the workers with it
            )
        proc = JobProcess(label, popen, out, err)
        self.processes.append(proc)
        return proc

    def run(self, label: str, *, once: bool = True, timeout: float = 420, **kwargs: Any) -> JobProcess:
        """Start and wait; the caller asserts on the return code (include `proc.tail()` in the message)."""
        proc = self.start(label, once=once, **kwargs)
        proc.wait(timeout)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.reap_group()
            if proc.popen.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(30)


# -- input -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputRecord:
    """One record of an input file as the test wrote it: valid Encounter or a record that must be quarantined."""

    uri: str
    position: str
    encounter_id: str | None
    last_updated: datetime | None

    @property
    def valid(self) -> bool:
        return self.encounter_id is not None and self.last_updated is not None


@dataclass(frozen=True)
class Expected:
    """What the tables must hold after every file was ingested exactly once, computed from the files."""

    files: frozenset[str]
    records: tuple[InputRecord, ...]

    @property
    def valid(self) -> list[InputRecord]:
        return [r for r in self.records if r.valid]

    @property
    def invalid(self) -> list[InputRecord]:
        return [r for r in self.records if not r.valid]

    @property
    def newest(self) -> dict[str, tuple[str, str]]:
        """encounter id -> (file, position) of its version with the newest meta.lastUpdated."""
        best: dict[str, InputRecord] = {}
        for rec in self.valid:
            assert rec.encounter_id is not None and rec.last_updated is not None
            current = best.get(rec.encounter_id)
            if current is not None and current.last_updated == rec.last_updated:
                raise AssertionError(f"test input is ambiguous: two versions of {rec.encounter_id} tie")
            if current is None or rec.last_updated > current.last_updated:  # type: ignore[operator]
                best[rec.encounter_id] = rec
        return {i: (r.uri, r.position) for i, r in best.items()}


def _classify(text: str, uri: str, position: str) -> InputRecord:
    """A valid Encounter has an id that is a FHIR id and a meta.lastUpdated; anything else is a bad record."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return InputRecord(uri, position, None, None)
    if not isinstance(value, dict) or value.get("resourceType") != "Encounter":
        return InputRecord(uri, position, None, None)
    rid = value.get("id")
    updated = (value.get("meta") or {}).get("lastUpdated")
    if not (isinstance(rid, str) and FHIR_ID.match(rid) and isinstance(updated, str)):
        return InputRecord(uri, position, None, None)
    return InputRecord(uri, position, rid, datetime.fromisoformat(updated))


def scan(path: Path) -> list[InputRecord]:
    """The records of one input file: NDJSON line by line (`line N`, 1-based), any other file whole (`file`)."""
    text = path.read_text(encoding="utf-8")
    uri = file_uri(path)
    if path.suffix == ".ndjson":
        return [_classify(line, uri, f"line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return [_classify(text, uri, "file")]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomically(path: Path, text: str) -> Path:
    """Write beside the target under a hidden name, then rename: the file source never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


class Landing:
    """The landing folder the job reads; every file the test lands goes through here (deterministic content)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []

    def generated(self, wave: str, *, files: int, per_file: int, seed: int) -> list[Path]:
        """Synthetic Encounters from streaming.generate (every 4th file a single pretty .json)."""
        out = generate(self.root / wave, files=files, per_file=per_file, seed=seed)
        self.files += out.files
        return list(out.files)

    def move_in(self, staged: Iterable[Path], wave: str) -> list[Path]:
        """Land files prepared outside the landing folder (a rename: the file source sees each file whole)."""
        (self.root / wave).mkdir(parents=True, exist_ok=True)
        moved = []
        for path in staged:
            target = self.root / wave / path.name
            os.replace(path, target)
            moved.append(target)
        self.files += moved
        return moved

    def adopt(self, staged: Landing, wave: str) -> list[Path]:
        """Land a wave another Landing wrote elsewhere with one folder rename: the job sees all of it or none."""
        source = staged.root / wave
        os.replace(source, self.root / wave)
        moved = [self.root / wave / p.relative_to(source) for p in staged.files if p.is_relative_to(source)]
        self.files += moved
        return moved

    def encounters(self, paths: Iterable[Path]) -> list[dict[str, Any]]:
        """The valid Encounters of some landed files, parsed (to derive versions of them)."""
        found = []
        for path in paths:
            text = path.read_text(encoding="utf-8")
            for doc in text.splitlines() if path.suffix == ".ndjson" else [text]:
                with contextlib.suppress(json.JSONDecodeError):
                    found.append(json.loads(doc))
        return [e for e in found if isinstance(e, dict) and e.get("resourceType") == "Encounter" and e.get("id")]

    def ndjson(self, rel: str, lines: Sequence[str]) -> Path:
        path = _write_atomically(self.root / rel, "".join(f"{line}\n" for line in lines))
        self.files.append(path)
        return path

    def versions(self, rel: str, base: Sequence[dict[str, Any]], *, shift: timedelta, status: str) -> Path:
        """One NDJSON file re-sending `base` encounters with meta.lastUpdated moved by `shift` (may be negative).

        Every other one also moves to another hospital, so a newer version changes its partition and a late
        older one would (wrongly) move it back.
        """
        lines = []
        for i, enc in enumerate(base):
            v = json.loads(json.dumps(enc))
            v["meta"] = {"lastUpdated": _iso(datetime.fromisoformat(enc["meta"]["lastUpdated"]) + shift)}
            v["status"] = status
            if i % 2:
                name = f"Fault Harness Hospital {'B' if shift > timedelta(0) else 'A'}"
                v["serviceProvider"] = {"reference": f"Organization/fault-{name[-1].lower()}", "display": name}
            lines.append(json.dumps(v, separators=(",", ":")))
        return self.ndjson(rel, lines)

    def bad_lines(self, rel: str, good: dict[str, Any]) -> Path:
        """NDJSON: a valid Encounter (a new id), then a line that is not JSON, then an Encounter without id."""
        fresh = json.loads(json.dumps(good))
        fresh["id"] = f"fault-{Path(rel).stem}"
        no_id = json.loads(json.dumps(good))
        del no_id["id"]
        broken = json.dumps(good, separators=(",", ":"))[:40]  # cut inside the object: not JSON
        return self.ndjson(
            rel,
            [json.dumps(fresh, separators=(",", ":")), broken, json.dumps(no_id, separators=(",", ":"))],
        )

    def bad_file(self, rel: str) -> Path:
        """A whole file that is not JSON at all: one quarantine row at position `file`."""
        path = _write_atomically(self.root / rel, "this is not FHIR, not even JSON\n")
        self.files.append(path)
        return path

    def expected(self) -> Expected:
        records = tuple(r for path in self.files for r in scan(path))
        return Expected(frozenset(file_uri(p) for p in self.files), records)


# -- ledger ----------------------------------------------------------------------------------------------------


class LedgerView(Protocol):
    def committed(self, uris: Iterable[str]) -> set[str]: ...

    def all_committed(self) -> Counter[str] | None: ...

    def open_intents(self) -> set[str]: ...


def wait_all_committed(what: str, proc: JobProcess, ledger: LedgerView, files: set[str], timeout: float) -> None:
    """Wait until the live job has committed every file in the ledger and left no intent open."""
    wait_until(
        what,
        lambda: proc.alive() and ledger.committed(files) == files and not ledger.open_intents(),
        timeout,
        every=0.5,
        detail=proc.tail,
    )


class SqliteLedgerView:
    """The job's SQLite ledger, opened read-only for every look (the job may be writing it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            db.close()

    # Keys are `<table>|<uri>` and `<table>|<batch key>` (streaming/identity.py); the tests use one table.
    def all_committed(self) -> Counter[str]:
        return Counter(_unscoped(uri) for (uri,) in self._rows("SELECT uri FROM files"))

    def committed(self, uris: Iterable[str]) -> set[str]:
        return set(self.all_committed()) & set(uris)

    def open_intents(self) -> set[str]:
        return {_unscoped(key) for (key,) in self._rows("SELECT batch_key FROM intents")}


def _unscoped(key: str) -> str:
    return key.partition(SEPARATOR)[2] or key


class DynamoLedgerView:
    """The job's DynamoDB ledger, read through the product's own client (straight to moto, not the proxy)."""

    def __init__(self, table: str, warehouse: Path) -> None:
        from streaming.ledger_dynamodb import DynamoDbLedger

        self.ledger = ScopedLedger(DynamoDbLedger(table), str(warehouse / "bronze_encounter"))

    def all_committed(self) -> None:
        return None  # a Scan is not needed: `committed` answers for the input files, the key makes each unique

    def committed(self, uris: Iterable[str]) -> set[str]:
        return self.ledger.committed(uris)

    def open_intents(self) -> set[str]:
        return {intent.batch_key for intent in self.ledger.open_intents()}


# -- tables ----------------------------------------------------------------------------------------------------


def tables(warehouse: Path) -> dict[str, TableSpec]:
    config = conf.load(None, {"warehouse": str(warehouse)})
    return {
        "bronze": encounter_table(config),
        "log": ingest_log_table(config),
        "quarantine": quarantine_table(config),
    }


def read_rows(spark: Any, spec: TableSpec, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Snapshot rows of a Hudi table (only `columns`); a table never written reads as empty."""
    if not (Path(spec.uri) / ".hoodie" / "hoodie.properties").exists():
        return []
    df = spark.read.format("hudi").load(spec.uri).select(*columns)
    return [row.asDict(recursive=True) for row in df.collect()]


def timeline(spec: TableSpec) -> list[str]:
    """The table's timeline files (instants and their states), sorted; a changed table changes this list."""
    folder = Path(spec.uri) / ".hoodie"
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name[0].isdigit()) if folder.exists() else []


def left_inflight(warehouse: Path) -> dict[str, int]:
    """Per table, how many instants a crash left requested/inflight (read from the files, like
    HudiWriter.inflight): tells which write a kill interrupted."""
    found = {}
    for name, spec in tables(warehouse).items():
        names = timeline(spec)
        done = {n.split(".")[0] for n in names if n.endswith((".commit", ".deltacommit", ".replacecommit"))}
        done |= {n.split(".")[0] for n in names if n.endswith((".rollback", ".clean"))}
        pending = {n.split(".")[0] for n in names if n.endswith((".inflight", ".requested"))} - done
        if pending:
            found[name] = len(pending)
    return found


def bronze_instants(spark: Any, warehouse: Path) -> list[str]:
    return sorted(c.instant for c in HudiWriter(spark).commits(tables(warehouse)["bronze"], newest=10_000))


def _few(items: Iterable[Any], n: int = 5) -> str:
    items = sorted(items, key=str)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return f"{items[:n]}{more}"


def check_invariants(spark: Any, warehouse: Path, landing: Landing, ledger: LedgerView, context: str) -> Expected:
    """Every invariant of exactly-once ingestion, against expectations computed from the landed files.

    Collects every broken invariant, then fails once naming them all (ids, files, counts only).
    """
    exp = landing.expected()
    specs = tables(warehouse)
    problems: list[str] = []

    # bronze: one row per distinct encounter id, and it is the newest version.
    newest = exp.newest
    bronze = read_rows(spark, specs["bronze"], ["encounter_id", "sourcename", "source_position"])
    counts = Counter(r["encounter_id"] for r in bronze)
    if dup := [i for i, c in counts.items() if c > 1]:
        problems.append(f"bronze: {len(dup)} ids more than once: {_few(dup)}")
    if missing := newest.keys() - counts.keys():
        problems.append(f"bronze: {len(missing)} of {len(newest)} ids missing: {_few(missing)}")
    if extra := counts.keys() - newest.keys():
        problems.append(f"bronze: {len(extra)} ids not in the input: {_few(extra)}")
    stale = {
        r["encounter_id"]: f"{Path(r['sourcename']).name} {r['source_position']}"
        for r in bronze
        if r["encounter_id"] in newest and (r["sourcename"], r["source_position"]) != newest[r["encounter_id"]]
    }
    if stale:
        want = {i: f"{Path(newest[i][0]).name} {newest[i][1]}" for i in stale}
        problems.append(
            f"bronze: {len(stale)} ids hold an older version: {_few(stale.items())}, newest: {_few(want.items())}"
        )

    # ingest log: every file exactly once across the rows' `files`; row sums match the input.
    log = read_rows(spark, specs["log"], ["batch_key", "files", "rows_written", "rows_rejected", "commit_instant"])
    logged = Counter(f for r in log for f in r["files"] or [])
    if twice := [f for f, c in logged.items() if c > 1]:
        problems.append(f"ingest log: {len(twice)} files in more than one batch: {_few(Path(f).name for f in twice)}")
    if unlogged := exp.files - logged.keys():
        problems.append(f"ingest log: {len(unlogged)} files never logged: {_few(Path(f).name for f in unlogged)}")
    if foreign := logged.keys() - exp.files:
        problems.append(f"ingest log: {len(foreign)} files not landed by the test: {_few(foreign)}")
    written = sum(r["rows_written"] or 0 for r in log)
    if written != len(exp.valid):
        problems.append(f"ingest log: rows_written sums to {written}, the input has {len(exp.valid)} valid Encounters")
    rejected = sum(r["rows_rejected"] or 0 for r in log)
    if rejected != len(exp.invalid):
        problems.append(f"ingest log: rows_rejected sums to {rejected}, the input has {len(exp.invalid)} bad records")

    # bronze timeline: each completed commit belongs to one logged batch, and no batch wrote twice (a batch that
    # wrote but was taken for "wrote nothing" would be written again by its replay: same rows, a second commit).
    logged_instant = {r["batch_key"]: r["commit_instant"] for r in log}
    commits = list(HudiWriter(spark).commits(specs["bronze"], newest=10_000))
    keys = Counter(c.batch_key for c in commits)
    if twice := [k for k, c in keys.items() if c > 1]:
        problems.append(f"bronze timeline: batches committed more than once: {_few(twice)}")
    if orphans := [c.instant for c in commits if c.batch_key not in logged_instant]:
        problems.append(f"bronze timeline: commits of no logged batch: {_few(orphans)}")
    if wrong := [c.instant for c in commits if logged_instant.get(c.batch_key, c.instant) != c.instant]:
        problems.append(f"bronze timeline: commits whose log row names another instant: {_few(wrong)}")

    # quarantine: the bad records, once each.
    quarantine = read_rows(spark, specs["quarantine"], ["sourcename", "source_position"])
    got = Counter((r["sourcename"], r["source_position"]) for r in quarantine)
    want_bad = Counter((r.uri, r.position) for r in exp.invalid)
    if got != want_bad:
        show = lambda c: _few(f"{Path(u).name} {p} x{n}" for (u, p), n in c.items())  # noqa: E731
        problems.append(f"quarantine: unexpected {show(got - want_bad)}; missing {show(want_bad - got)}")

    # ledger: every file committed (once: it is the store's key), nothing else, no intent left open.
    committed = ledger.committed(exp.files)
    if uncommitted := exp.files - committed:
        problems.append(f"ledger: {len(uncommitted)} files not committed: {_few(Path(f).name for f in uncommitted)}")
    every = ledger.all_committed()
    if every is not None:
        if twice := [f for f, c in every.items() if c > 1]:
            problems.append(f"ledger: files committed more than once: {_few(twice)}")
        if foreign := every.keys() - exp.files:
            problems.append(f"ledger: {len(foreign)} committed files not landed by the test: {_few(foreign)}")
    if intents := ledger.open_intents():
        problems.append(f"ledger: batch intents still open: {_few(intents)}")

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


BUSINESS_COLUMNS = tuple(c for c in BRONZE_COLUMNS if c != "ingested_at")  # when a batch ran is not business


def business_rows(spark: Any, warehouse: Path) -> dict[str, tuple[Any, ...]]:
    """encounter id -> the row's business columns (no _hoodie_* meta columns, no ingested_at)."""
    rows = read_rows(spark, tables(warehouse)["bronze"], BUSINESS_COLUMNS)
    return {r["encounter_id"]: tuple(r[c] for c in BUSINESS_COLUMNS) for r in rows}


def compare_business_rows(got: Mapping[str, tuple[Any, ...]], want: Mapping[str, tuple[Any, ...]]) -> list[str]:
    """Differences between two bronze tables, by id and column name (never values)."""
    problems = []
    if missing := want.keys() - got.keys():
        problems.append(f"{len(missing)} ids missing: {_few(missing)}")
    if extra := got.keys() - want.keys():
        problems.append(f"{len(extra)} ids extra: {_few(extra)}")
    differ: dict[str, list[str]] = {}
    for key in want.keys() & got.keys():
        cols = [c for c, a, b in zip(BUSINESS_COLUMNS, got[key], want[key], strict=True) if a != b]
        if cols:
            differ[key] = cols
    if differ:
        problems.append(f"{len(differ)} rows differ: {_few(differ.items())}")
    return problems


# -- ledger outage: a TCP proxy in front of moto ----------------------------------------------------------------


class TcpProxy:
    """Forwards a loopback port to `target`; `pause()` takes the port away (refused, open connections cut),
    `resume()` opens the same port again. Each connection is two pump threads.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def to(cls, url: str) -> TcpProxy:
        host, _, port = url.split("://", 1)[-1].rstrip("/").partition(":")
        return cls(host, int(port))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))  # port 0 the first time: the OS picks, later starts reuse it
        listener.listen(64)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True)
        self._thread.start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while self._accepting.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def pause(self) -> None:
        """Stop listening (new connections are refused) and cut every open connection."""
        self._accepting.clear()
        if self._thread:
            self._thread.join(5)
        if self._listener:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            self._close(s)

    def resume(self) -> None:
        self.start()

    def close(self) -> None:
        self.pause()


@dataclass
class Stopwatch:
    """Named durations of a scenario, for the report (printed; pytest shows them with -s or on failure)."""

    started: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic() - self.started))
        print(f"[{self.marks[-1][1]:7.1f}s] {name}", flush=True)

    def __str__(self) -> str:
        return ", ".join(f"{n}@{t:.0f}s" for n, t in self.marks)
