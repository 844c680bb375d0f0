"""`status`: the verdict, the backlog (waiting, overwritten, ignored, listed; local and S3), the writer lease,
pending instants, recent batches, quarantine and table figures; `--check`'s exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import copy_samples, job_config, read_table

from streaming import cli
from streaming.adapters import aws
from streaming.adapters.storage import LANDED_AT
from streaming.config import ConfigError, JobConfig, StatusConfig
from streaming.ledger import BatchIntent, LeaseState, SqliteLedger, open_ledger
from streaming.ledger.lease import lease_name
from streaming.ledger.log_summary import LogSummary
from streaming.ops import backlog as backlog_module
from streaming.ops import status
from streaming.ops.backlog import Backlog
from streaming.ops.status import BEHIND, OK, STALLED, Batch, Instant, TableFigures, Verdict

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def _uri(path: Path) -> str:
    return f"file:{path}"  # how Spark's Hadoop Path (and so the ledger) spells a local file


def _land(path: Path, content: bytes, modified: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


# -- without a JVM --------------------------------------------------------------------------------------------------


def test_status_imports_no_pyspark() -> None:
    code = "import sys, streaming.ops.status, streaming.ops.query; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hidden_names_are_those_spark_skips() -> None:
    skipped = ["_SUCCESS", "_temporary", ".part.json", ".staging", "a.json._COPYING_"]
    listed = ["a.json", "_metadata", "_common_metadata", "_x=1", "a_b.json", "x.", "COPYING"]
    assert [n for n in skipped + listed if status.hidden(n)] == skipped


def test_local_waiting_files_skip_hidden_and_committed(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    old = _land(landing / "2024" / "old.ndjson", b"{}\n", NOW - timedelta(hours=5))
    odd = _land(landing / "a b%41.json", b"{}", NOW - timedelta(minutes=30))
    empty = _land(landing / "empty.json", b"", NOW - timedelta(minutes=1))
    done = _land(landing / "done.json", b"{}", NOW - timedelta(days=3))
    _land(landing / "_tmp" / "hidden.json", b"{}", NOW - timedelta(days=9))
    _land(landing / ".staging.json", b"{}", NOW - timedelta(days=9))
    _land(landing / "part.json._COPYING_", b"{}", NOW - timedelta(days=9))
    config = job_config(tmp_path, landing)
    ledger = SqliteLedger(config.ledger_path)
    ledger.commit("run-000000", [_uri(done)], NOW)
    ledger.close()

    waiting = status.waiting_files(config, now=NOW)

    assert waiting.files == [
        (_uri(old), NOW - timedelta(hours=5)),
        (_uri(odd), NOW - timedelta(minutes=30)),
        (_uri(empty), NOW - timedelta(minutes=1)),
    ]
    assert waiting.count == 3
    assert waiting.oldest_age_seconds == pytest.approx(5 * 3600)


def test_without_a_ledger_everything_waits_and_none_is_created(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    one = _land(landing / "one.json", b"{}", NOW - timedelta(seconds=42))
    config = job_config(tmp_path, landing)

    assert status.waiting_files(config, now=NOW) == status.Waiting(1, 42.0, [(_uri(one), NOW - timedelta(seconds=42))])
    assert not Path(config.ledger_path).exists()
    assert status.waiting_files(job_config(tmp_path, tmp_path / "nothing-landed-yet")) == status.Waiting(0, None, [])


def test_s3a_waiting_files_against_the_sqlite_ledger(s3_bucket: str, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    keys = ["landing/a.json", "landing/2024/01/b.ndjson", "landing/c d%41.json", "landing/empty.json"]
    for key in [*keys, "landing/_SUCCESS", "landing/.tmp/c.json", "landing/dir/", "landing2/x.json", "other/y.json"]:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"" if key.endswith(("/", "empty.json")) else b"{}")
    modified = {key: s3.head_object(Bucket=s3_bucket, Key=key)["LastModified"].astimezone(UTC) for key in keys}
    config = _s3_config(tmp_path, s3_bucket)
    ledger = SqliteLedger(config.ledger_path)
    ledger.commit("run-000000", [f"s3a://{s3_bucket}/landing/a.json"], NOW)
    ledger.close()
    now = max(modified.values()) + timedelta(seconds=100)

    waiting = status.waiting_files(config, now=now)

    expected = sorted((f"s3a://{s3_bucket}/{k}", modified[k]) for k in keys if k != "landing/a.json")
    assert sorted(waiting.files) == expected
    assert waiting.count == 3
    assert waiting.oldest_age_seconds == pytest.approx((now - min(m for _, m in expected)).total_seconds())


@pytest.mark.slow  # 1,003 objects put into moto: seconds here
def test_s3_listing_reads_every_page(s3_bucket: str, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    keys = [f"landing/bulk/{i:04d}.json" for i in range(1003)]  # list_objects_v2 returns 1,000 keys a page
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=s3_bucket, Key=key, Body=b"{}"), keys))

    with _counting_listings() as calls:
        found = status.backlog(_s3_config(tmp_path, s3_bucket))

    assert (found.listed, found.waiting, found.truncated, len(calls)) == (1003, 1003, False, 2)
    oldest = sorted((m, f"s3a://{s3_bucket}/{k}") for k, m in _modified(s3_bucket, keys).items())[:10]
    assert found.waiting_files == tuple((uri, m) for m, uri in oldest)


def _s3_config(tmp_path: Path, bucket: str, **overrides: Any) -> JobConfig:
    path = str(tmp_path / "ledger.sqlite3")
    return job_config(tmp_path, f"s3a://{bucket}/landing", **{"ledger.path": path, **overrides})


def test_status_before_any_run(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    _land(landing / "one.json", b"{}", NOW - timedelta(minutes=2))
    config = job_config(tmp_path, landing)

    waiting = status.waiting_files(config, now=NOW)
    assert (waiting.count, waiting.oldest_age_seconds) == (1, 120.0)
    # Before the first run the warehouse holds no table: status says so instead of reporting empty tables, which a
    # mistyped --warehouse would look like too.
    with pytest.raises(ConfigError, match="holds none of the tables"):
        status.collect(config, now=NOW)


# -- the backlog: one listing against the ledger -------------------------------------------------------------------


def _ms(at: datetime) -> datetime:
    """A time as Spark's listing gives it (Hadoop's FileStatus keeps milliseconds)."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _commit(config: JobConfig, files: list[Path], *, versioned: bool = True) -> None:
    """Commit `files` as a batch does: scoped keys, each file's version (size@time) as the stream listed it."""
    from streaming.bronze.records import LandedFile
    from streaming.pipeline.deps import file_version

    versions = {}
    for path in files:
        stat = path.stat()
        landed = LandedFile(_uri(path), stat.st_size, _ms(datetime.fromtimestamp(stat.st_mtime, UTC)))
        versions[landed.uri] = file_version(landed)
    ledger = open_ledger(config)
    try:
        ledger.commit("run-000001", [_uri(p) for p in files], NOW, versions=versions if versioned else None)
    finally:
        ledger.close()


def test_backlog_compares_every_listed_file_with_the_version_the_ledger_committed(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    old = _land(landing / "2024" / "old.ndjson", b"{}\n", NOW - timedelta(hours=5))
    new = _land(landing / "new.json", b"{}", NOW - timedelta(minutes=1))
    two_days = NOW - timedelta(days=2)
    same = _land(landing / "same.json", b"{}", two_days)
    grown = _land(landing / "grown.json", b"{}", two_days)
    touched = _land(landing / "touched.json", b"{}", two_days)
    finer = _land(landing / "finer.json", b"{}", two_days + timedelta(microseconds=123456))  # listed as .123
    recovered = _land(landing / "recovered.json", b"{}", two_days)
    ignored = [
        _land(landing / name, b"{}", two_days)
        for name in (".part-0.json", "_SUCCESS", "late.json._COPYING_", "_tmp/inner.json")
    ]
    config = job_config(tmp_path, landing)
    _commit(config, [same, grown, touched, finer])
    _commit(config, [recovered], versioned=False)  # recovery commits without versions: nothing to compare
    _land(grown, b'{"resourceType": "Encounter"}', two_days)  # rewritten in place: new size, same time
    _land(touched, b"{}", NOW - timedelta(hours=1))  # rewritten in place: same size, new time

    found = status.backlog(config, now=NOW)

    assert found == Backlog(
        at=NOW,
        listed=7,
        listed_committed=5,
        waiting=2,
        oldest_waiting_seconds=5 * 3600,
        overwritten=2,
        ignored=4,
        truncated=False,
        waiting_files=((_uri(old), NOW - timedelta(hours=5)), (_uri(new), NOW - timedelta(minutes=1))),
        overwritten_files=(_uri(grown), _uri(touched)),
        ignored_files=tuple(_uri(p) for p in ignored),  # the walk's order: names sorted, folders after files
    )
    assert (found.count, found.oldest_age_seconds) == (2, 5 * 3600)  # what metrics.waiting_metrics reads


def test_backlog_stops_at_max_listed_and_keeps_only_the_oldest_examples(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    ages = {"a.json": 10, "b.json": 50, "c.json": 30, "d.json": 90, "e.json": 20}  # minutes
    for name, minutes in ages.items():
        _land(landing / name, b"{}", NOW - timedelta(minutes=minutes))

    def counts(max_listed: int, examples: int = 10) -> tuple[int, int, float | None, bool, list[str]]:
        config = job_config(tmp_path, landing, **{"status.max_listed": max_listed})
        found = status.backlog(config, now=NOW, examples=examples)
        names = [uri.rsplit("/", 1)[1] for uri, _ in found.waiting_files]
        return found.listed, found.waiting, found.oldest_waiting_seconds, found.truncated, names

    assert counts(3) == (3, 3, 50 * 60, True, ["b.json", "c.json", "a.json"])  # a, b, c listed, oldest first
    assert counts(5) == (5, 5, 90 * 60, False, ["d.json", "b.json", "c.json", "e.json", "a.json"])  # all: not cut
    assert counts(5, examples=2) == (5, 5, 90 * 60, False, ["d.json", "b.json"])  # counts stay whole


@contextmanager
def _counting_listings() -> Iterator[list[dict[str, Any]]]:
    """The ListObjectsV2 requests S3 receives meanwhile (the client is shared, so the listing's are counted)."""
    calls: list[dict[str, Any]] = []
    events = aws.client("s3").meta.events

    def seen(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    events.register("before-parameter-build.s3.ListObjectsV2", seen)
    try:
        yield calls
    finally:
        events.unregister("before-parameter-build.s3.ListObjectsV2", seen)


def _modified(bucket: str, keys: list[str]) -> dict[str, datetime]:
    s3 = aws.client("s3")
    return {key: s3.head_object(Bucket=bucket, Key=key)["LastModified"].astimezone(UTC) for key in keys}


def test_s3_backlog_pages_and_reads_no_page_past_max_listed(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog_module, "_PAGE", 10)  # pages of 10 keys: paging without putting 1,000 objects
    s3 = aws.client("s3")
    files = [f"landing/f{i:02d}.json" for i in range(25)]
    for key in [".tmp/x.json", "_SUCCESS"]:
        s3.put_object(Bucket=s3_bucket, Key=f"landing/{key}", Body=b"{}")  # listed first: '.' and '_' sort first
    for key in files:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"{}")

    def listing(max_listed: int) -> tuple[int, int, int, bool, int]:
        config = _s3_config(tmp_path, s3_bucket, **{"status.max_listed": max_listed})
        with _counting_listings() as calls:
            found = status.backlog(config)
        assert all(call["MaxKeys"] == 10 for call in calls)
        return found.listed, found.ignored, found.waiting, found.truncated, len(calls)

    assert listing(100) == (25, 2, 25, False, 3)  # 10 + 10 + 7 keys
    assert listing(27) == (25, 2, 25, False, 3)  # exactly all of them: not truncated
    assert listing(12) == (10, 2, 10, True, 2)  # 2 of the second page: truncated, and no third page is asked for
    assert listing(20) == (18, 2, 18, True, 3)


def test_s3_object_moved_back_from_the_archive_is_not_an_overwrite(s3_bucket: str, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    landed = datetime(2029, 6, 1, 8, 0, 0, tzinfo=UTC)
    body = b'{"resourceType": "Encounter"}'
    # `reingest` moved it back: a new LastModified, the first landing time kept as metadata (storage.move).
    s3.put_object(Bucket=s3_bucket, Key="landing/back.json", Body=body, Metadata={LANDED_AT: landed.isoformat()})
    s3.put_object(Bucket=s3_bucket, Key="landing/copied.json", Body=body)  # same size, no such metadata: a rewrite
    s3.put_object(Bucket=s3_bucket, Key="landing/grown.json", Body=body + b" ")
    config = _s3_config(tmp_path, s3_bucket)
    uris = [f"s3a://{s3_bucket}/landing/{name}" for name in ("back.json", "copied.json", "grown.json")]
    ledger = open_ledger(config)
    ledger.commit("run-000001", uris, NOW, versions={uri: f"{len(body)}@{landed.isoformat()}" for uri in uris})
    ledger.close()

    found = status.backlog(config)

    assert (found.listed_committed, found.overwritten, found.overwritten_files) == (3, 2, tuple(uris[1:]))


def test_waiting_files_keeps_its_shape_for_the_metrics(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    for n in range(12):
        _land(landing / f"f{n:02d}.json", b"{}", NOW - timedelta(minutes=n))
    waiting = status.waiting_files(job_config(tmp_path, landing), now=NOW)
    assert (waiting.count, waiting.oldest_age_seconds) == (12, 11 * 60)
    assert [uri.rsplit("/", 1)[1] for uri, _ in waiting.files] == [f"f{n:02d}.json" for n in range(11, 1, -1)]


# -- the verdict ------------------------------------------------------------------------------------------------

SETTINGS = StatusConfig(behind_seconds=900, stalled_seconds=1800)


def _backlog(waiting: int = 0, oldest: float | None = None, *, truncated: bool = False) -> Backlog:
    return Backlog(NOW, waiting, 0, waiting, oldest, 0, 0, truncated)


def _lease(expires: timedelta, *, released: bool = False, owner: str = "run-a") -> LeaseState:
    taken = NOW - timedelta(hours=1)
    return LeaseState(
        "writer:x", owner, 3, NOW + expires, taken, taken, NOW - timedelta(minutes=2) if released else None
    )


@pytest.mark.parametrize(
    ("backlog", "since_commit", "lease", "expected"),
    [
        pytest.param(_backlog(), timedelta(hours=1), None, (OK, "no file waits; the last batch committed 1.0h ago")),
        pytest.param(_backlog(), None, None, (OK, "no file waits"), id="never-ran-nothing-landed"),
        pytest.param(  # a quiet stream whose next file just landed is not stalled
            _backlog(3, 60),
            timedelta(hours=2),
            None,
            (OK, "3 files wait, the oldest 1.0m old; the last batch committed 2.0h ago"),
        ),
        pytest.param(
            _backlog(3, 1000),
            timedelta(seconds=10),
            None,
            (
                BEHIND,
                "the oldest of 3 files waiting is 16.7m old (status.behind_seconds = 900); the last batch"
                " committed 10s ago",
            ),
        ),
        pytest.param(_backlog(1, 2000), timedelta(seconds=10), None, (BEHIND, None), id="commits-go-on"),
        pytest.param(
            _backlog(3, 2000),
            timedelta(seconds=1900),
            None,
            (
                STALLED,
                "3 files wait, the oldest for 33.3m, and the last batch committed 31.7m ago"
                " (status.stalled_seconds = 1800)",
            ),
        ),
        pytest.param(
            _backlog(1, 2000),
            None,
            None,
            (
                STALLED,
                "1 file waits, the oldest for 33.3m, and no batch has ever committed (status.stalled_seconds = 1800)",
            ),
        ),
        pytest.param(
            _backlog(2, 5),
            timedelta(seconds=30),
            _lease(-timedelta(minutes=1)),
            (
                STALLED,
                "2 files wait and the writer lease of run run-a expired 1.0m ago without being released: its job"
                " stopped or died",
            ),
        ),
        pytest.param(_backlog(2, 5), timedelta(seconds=30), _lease(-timedelta(minutes=1), released=True), (OK, None)),
        pytest.param(_backlog(2, 5), timedelta(seconds=30), _lease(timedelta(seconds=40)), (OK, None), id="lease-live"),
        pytest.param(_backlog(), timedelta(seconds=30), _lease(-timedelta(minutes=1)), (OK, None), id="dead-but-idle"),
        pytest.param(_backlog(7, 1000, truncated=True), timedelta(seconds=10), None, (BEHIND, None), id="truncated"),
    ],
)
def test_each_verdict_from_its_state(
    backlog: Backlog, since_commit: timedelta | None, lease: LeaseState | None, expected: tuple[str, str | None]
) -> None:
    last = None if since_commit is None else NOW - since_commit
    verdict = status.judge(backlog, last_commit_at=last, lease=lease, settings=SETTINGS, now=NOW)
    state, reason = expected
    assert verdict.state == state
    if reason is not None:
        assert verdict.reason == reason
    if backlog.truncated:
        assert verdict.reason.startswith("the oldest of at least 7 files waiting")


# -- what status shows -------------------------------------------------------------------------------------------


QUIET = Verdict(OK, "no file waits")


def _status(
    *,
    verdict: Verdict = QUIET,
    lease: LeaseState | None = None,
    run_ingested: bool | None = None,
    archive: str = "",
) -> status.Status:
    """A status as collect would build it, from constructed parts (no table is read)."""
    found = Backlog(
        at=NOW,
        listed=12_345,
        listed_committed=12_000,
        waiting=2,
        oldest_waiting_seconds=7200,
        overwritten=3,
        ignored=1,
        waiting_files=(("file:/l/a.json", NOW - timedelta(hours=2)), ("file:/l/b.json", NOW - timedelta(hours=1))),
        overwritten_files=("file:/l/daily.json", "file:/l/fixed.json"),
        ignored_files=("file:/l/_SUCCESS",),
    )
    batches = [
        Batch("run-b-000004", "run-b", NOW - timedelta(minutes=5), NOW - timedelta(minutes=4), 3, 1, 90, 2, 4, 1, 5,
              60.0, 75.5, "20300101115600000"),
        Batch("run-b-000003", "run-b", NOW - timedelta(minutes=9), NOW - timedelta(minutes=8), 1, 0, 10, 0, 0, 0,
              None, 60.0, None, None),
    ]  # fmt: skip
    plan = Instant("20300101115900000", "replacecommit", "requested")
    tables = [
        TableFigures("bronze_encounter", "/w/bronze_encounter", True, 100, 2, 3, 4096, 5, "20300101115600000",
                     NOW - timedelta(minutes=4), 0, None, (plan,)),
        TableFigures("bronze_encounter_ingest_log", "/w/log", False),
    ]  # fmt: skip
    return status.Status(
        at=NOW,
        source="/l",
        warehouse="/w",
        settings=StatusConfig(),
        source_archive=archive,
        verdict=verdict,
        backlog=found,
        lease=lease,
        run_ingested=run_ingested,
        batches=batches,
        quarantine={"bad_json": 2},
        tables=tables,
    )


def test_text_shows_the_verdict_first_then_overwritten_ignored_listing_writer_and_pending() -> None:
    held = _lease(timedelta(seconds=48), owner="run-b")
    text = status.render_text(_status(verdict=Verdict(BEHIND, "the oldest ..."), lease=held, run_ingested=True))
    lines = text.splitlines()

    assert lines[0] == "BEHIND: the oldest ..."
    assert (
        "writer     run run-b (epoch 3) holds the lease: taken 2030-01-01 11:00:00Z, last renewed 2030-01-01 11:00:00Z;"
        " it expires in 48s unless renewed"
    ) in lines
    assert lines[lines.index("verdict    BEHIND: a file waits over 15.0m (status.behind_seconds)") + 1] == (
        "           STALLED: files waited 15.0m and nothing committed for as long (status.stalled_seconds), or the"
        " writer lease expired while files wait"
    )
    at = lines.index("waiting files: 2 (oldest 2.0h old)")
    assert lines[at + 1 : at + 3] == [
        "  2030-01-01 10:00:00Z  file:/l/a.json",
        "  2030-01-01 11:00:00Z  file:/l/b.json",
    ]
    at = lines.index(
        "overwritten after they were ingested: 3 (their new content is not in the table;"
        " `bronze-encounter reingest FILE...` takes it)"
    )
    assert lines[at + 1 : at + 3] == ["  file:/l/daily.json", "  file:/l/fixed.json"]
    at = lines.index(
        "ignored for their names: 1 (a name or folder starting with _ or . is never listed; rename them, or"
        " `bronze-encounter reingest FILE...` takes them as they are)"
    )
    assert lines[at + 1] == "  file:/l/_SUCCESS"
    assert "listed per trigger: 12,345 files, 12,000 of them already committed" in lines
    assert (
        "  listing grows: 12,000 committed files stay in the source and every trigger lists them again"
        " (status.listing_warn_files = 10,000); set source_archive to move ingested files out of the prefix"
        ' (docs/design.md, "Exactly once")'
    ) in lines
    header = lines.index("batches, newest first:") + 1
    assert lines[header].split() == [
        "started", "seconds", "lag", "files", "already", "written", "deleted", "rejected", "skipped", "stale",
        "commit", "batch",
    ]  # fmt: skip
    first = ["60.0", "1.3m", "3", "1", "90", "2", "4", "1", "5", "20300101115600000", "run-b-000004"]
    assert lines[header + 1].split()[2:] == first  # after the start's date and time
    assert lines[header + 2].split()[2:] == ["60.0", "-", "1", "0", "10", "0", "0", "0", "-", "-", "run-b-000003"]
    assert lines[-1] == (
        "  pending on bronze_encounter: 20300101115900000 replacecommit requested (a clustering plan: upserts into"
        " its file groups are refused until it runs; the job's next start runs it or rolls it back)"
    )


@pytest.mark.parametrize(
    ("lease", "run_ingested", "expected"),
    [
        (None, None, "writer     no writer lease: no job has run against this ledger"),
        (
            _lease(-timedelta(hours=1), released=True),
            False,
            "writer     lease free; the last run run-a (epoch 3) ended: taken 2030-01-01 11:00:00Z, last renewed"
            " 2030-01-01 11:00:00Z, released 2030-01-01 11:58:00Z; it wrote no batch: found nothing new",
        ),
        (
            _lease(-timedelta(minutes=12)),
            True,
            "writer     lease of run run-a (epoch 3) expired 12.0m ago, never released (its job stopped or died):"
            " taken 2030-01-01 11:00:00Z, last renewed 2030-01-01 11:00:00Z",
        ),
        (
            _lease(timedelta(seconds=20)),
            False,
            "writer     run run-a (epoch 3) holds the lease: taken 2030-01-01 11:00:00Z, last renewed"
            " 2030-01-01 11:00:00Z; it expires in 20s unless renewed; no batch in this run yet",
        ),
        (  # written by a release before the lease kept its times
            LeaseState("writer:x", "run-old", 1, datetime.fromtimestamp(0, UTC), None, None, None),
            True,
            "writer     lease free; the last run run-old (epoch 1) ended",
        ),
    ],
)
def test_the_writer_line_says_who_holds_the_lease_and_whether_the_last_run_found_anything(
    lease: LeaseState | None, run_ingested: bool | None, expected: str
) -> None:
    assert expected in status.render_text(_status(lease=lease, run_ingested=run_ingested)).splitlines()


def test_with_an_archive_set_a_growing_listing_points_at_the_archive() -> None:
    text = status.render_text(_status(archive="/archive"))
    assert (
        "  listing grows: 12,000 committed files stay in the source and every trigger lists them, though"
        " source_archive is set (/archive): ingested files are not moved out (the archive's permissions?"
        ' docs/design.md, "Exactly once")'
    ) in text.splitlines()


def test_json_holds_the_verdict_counts_examples_lease_and_iso_times() -> None:
    state = _status(verdict=Verdict(STALLED, "why"), lease=_lease(-timedelta(minutes=1)), run_ingested=False)
    as_json = json.loads(json.dumps(state.to_json()))

    assert as_json["verdict"] == {
        "state": "STALLED",
        "reason": "why",
        "behind_seconds": 900,
        "stalled_seconds": 900,
        "last_commit_at": "2030-01-01T11:56:00+00:00",
    }
    assert as_json["waiting"] == {
        "count": 2,
        "oldest_age_seconds": 7200,
        "files": [
            {"uri": "file:/l/a.json", "modified": "2030-01-01T10:00:00+00:00"},
            {"uri": "file:/l/b.json", "modified": "2030-01-01T11:00:00+00:00"},
        ],
    }
    assert as_json["overwritten"] == {"count": 3, "files": ["file:/l/daily.json", "file:/l/fixed.json"]}
    assert as_json["ignored"] == {"count": 1, "files": ["file:/l/_SUCCESS"]}
    assert as_json["listing"] == {
        "listed": 12_345,
        "listed_committed": 12_000,
        "truncated": False,
        "max_listed": 100_000,
        "grows": True,
        "listing_warn_files": 10_000,
        "source_archive": None,
    }
    assert as_json["lease"] == {
        "name": "writer:x",
        "owner": "run-a",
        "epoch": 3,
        "expires_at": "2030-01-01T11:59:00+00:00",
        "acquired_at": "2030-01-01T11:00:00+00:00",
        "renewed_at": "2030-01-01T11:00:00+00:00",
        "released_at": None,
        "run_ingested": False,
    }
    assert [b["batch_key"] for b in as_json["batches"]] == ["run-b-000004", "run-b-000003"]
    for shown, batch in zip(as_json["batches"], state.batches, strict=True):
        assert datetime.fromisoformat(shown["started_at"]) == batch.started_at
        assert (shown["lag_seconds"], shown["rows_stale"]) == (batch.lag_seconds, batch.rows_stale)
    assert as_json["tables"][0]["pending"] == [
        {"instant": "20300101115900000", "action": "replacecommit", "state": "requested"}
    ]


@pytest.mark.parametrize(("state", "code"), [(OK, 0), (BEHIND, cli.EXIT_BEHIND), (STALLED, cli.EXIT_STALLED)])
@pytest.mark.parametrize("form", ["text", "json"])
def test_check_exits_0_only_when_ok(
    state: str,
    code: int,
    form: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = _status(verdict=Verdict(state, "the reason"))
    monkeypatch.setattr(status, "collect", lambda config, last: shown)
    for name in ("bronze_encounter", "bronze_encounter_ingest_log", "bronze_encounter_quarantine"):
        _land(tmp_path / "wh" / name / ".hoodie" / "hoodie.properties", b"", NOW)  # a warehouse that holds tables
    args = ["status", "--warehouse", str(tmp_path / "wh"), "--source", str(tmp_path), "--format", form]

    assert cli.main([*args, "--check"]) == code
    out = capsys.readouterr().out
    assert (json.loads(out)["verdict"]["state"] if form == "json" else out.splitlines()[0]) == (
        state if form == "json" else f"{state}: the reason"
    )
    assert cli.main(args) == 0  # without --check the verdict is shown, not exited with
    assert (cli.EXIT_BEHIND, cli.EXIT_STALLED) == (6, 7)  # documented in docs/reference.md and --help


def test_the_lease_is_read_from_the_ledger_and_a_missing_ledger_is_not_created(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    _land(landing / "one.json", b"{}", NOW - timedelta(minutes=3))
    config = job_config(tmp_path, landing)

    assert status.ledger_view(config, NOW)[1:] == (None, [])
    assert not Path(config.ledger_path).exists()

    ledger = open_ledger(config)
    ledger.acquire_lease(lease_name(config), "run-a", timedelta(minutes=1))
    ledger.close()
    found, lease, _ = status.ledger_view(config, NOW)

    assert (found.waiting, found.oldest_waiting_seconds) == (1, 180)
    assert lease is not None
    assert (lease.name, lease.owner, lease.epoch, lease.released) == (lease_name(config), "run-a", 1, False)


def test_batches_whose_log_rows_wait_in_the_ledger_are_shown_newest_first_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status, "quarantine_counts", lambda config: {})  # no table written: nothing to count
    config = job_config(tmp_path, tmp_path / "landing")
    (tmp_path / "landing").mkdir()
    ledger = open_ledger(config)
    for n in range(3):
        started = NOW - timedelta(minutes=10 - n)
        ledger.begin(BatchIntent(f"run-b-{n:06d}", "run-b", n, (f"file:/l/{n}.ndjson",) * (n + 1), started))
    stats = {"rows_written": 7, "rows_deleted": 1, "rows_rejected": 2, "rows_skipped": 0, "rows_stale": None}
    for n in range(2):  # the third stays open: a batch in flight is not shown
        summary = LogSummary(n, stats, NOW - timedelta(minutes=9 - n), f"2030010111{n}", 4.5 if n else None)
        ledger.commit(f"run-b-{n:06d}", [f"file:/l/{n}.ndjson"], NOW, summary=summary.to_json())
    ledger.close()

    found = status.collect(config, now=NOW)

    assert found.log_waiting == 2
    assert [(b.batch_key, b.logged, b.files, b.files_already_committed) for b in found.batches] == [
        ("run-b-000001", False, 2, 1),
        ("run-b-000000", False, 1, 0),
    ]
    newest = found.batches[0]
    assert (newest.rows_written, newest.rows_deleted, newest.rows_rejected, newest.rows_stale) == (7, 1, 2, None)
    assert (newest.seconds, newest.lag_seconds, newest.commit_instant) == (60.0, 4.5, "20300101111")
    text = status.render_text(found)
    assert "2 committed, their ingest-log rows waiting in the ledger" in text
    assert "run-b-000001 *" in text and "run-b-000002" not in text
    assert found.to_json()["ingest_log_waiting"] == 2


def test_the_views_tables_are_listed_beside_the_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "quarantine_counts", lambda config: {})  # no table written: nothing to count
    (tmp_path / "landing").mkdir()
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"resourceType": "ViewDefinition", "name": "my_view", "resource": "Patient"}))
    run = f"encounter,patient,{mine},condition"
    found = status.collect(job_config(tmp_path, tmp_path / "landing", **{"views.run": run}), now=NOW)

    names = [t.name for t in found.tables]
    assert names[3:] == ["bronze_patient", "bronze_my_view", "bronze_condition"]  # the job's three first
    assert not any(t.exists for t in found.tables)
    assert "bronze_my_view" in status.render_text(found)
    assert [t["name"] for t in found.to_json()["tables"]][3:] == names[3:]


# -- pending instants --------------------------------------------------------------------------------------------

# Names as Hudi 1.0 writes a table version 6 timeline (a completed commit, a clean; what is left pending).
TIMELINE = [
    "20300101110000000.commit.requested",
    "20300101110000000.inflight",
    "20300101110000000.commit",
    "20300101110500000.clean.requested",
    "20300101110500000.clean.inflight",
    "20300101110500000.clean",
    "20300101113000000.replacecommit.requested",  # a clustering plan, not started
    "20300101114000000.commit.requested",
    "20300101114000000.inflight",  # a commit under way
    "20300101115000000.clean.requested",
    "20300101115000000.clean.inflight",
    ".20300101114000000.inflight.crc",
    "hoodie.properties",
]
PENDING = (
    Instant("20300101113000000", "replacecommit", "requested"),
    Instant("20300101114000000", "commit", "inflight"),
    Instant("20300101115000000", "clean", "inflight"),
)
NESTED = ["metadata/.hoodie/20300101120000000.deltacommit.requested", "archived/20200101000000000.commit.requested"]


def test_pending_instants_of_a_local_table(tmp_path: Path) -> None:
    table = tmp_path / "bronze_encounter"
    for name in TIMELINE + NESTED:
        _land(table / ".hoodie" / name, b"", NOW)
    assert status.pending_instants(str(table)) == PENDING
    assert status.pending_instants(str(tmp_path / "not-written")) == ()


def test_pending_instants_of_an_s3_table(s3_bucket: str) -> None:
    for name in TIMELINE + NESTED:
        aws.client("s3").put_object(Bucket=s3_bucket, Key=f"wh/bronze_encounter/.hoodie/{name}", Body=b"")
    assert status.pending_instants(f"s3a://{s3_bucket}/wh/bronze_encounter") == PENDING


# -- after the real job ran over the Synthea samples -----------------------------------------------------------------


@dataclass(frozen=True)
class Landed:
    config: JobConfig
    before: status.Waiting
    files: list[tuple[str, datetime]]  # (uri, modified), oldest first
    runs: tuple[str, str]  # the run that ingested them, and the one after it that found nothing


@pytest.fixture(scope="module")
def landed(spark: Any, samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Landed:
    """Synthea NDJSON plus an empty and a truncated file, listed by `status`, then ingested by the real job once;
    a second run finds nothing."""
    from streaming.pipeline import job

    root = tmp_path_factory.mktemp("status")
    landing = root / "landing"
    (ndjson,) = copy_samples(samples, landing, bundles=False)
    now = datetime.now(UTC).replace(microsecond=0)
    times = {
        ndjson: now - timedelta(hours=2),
        _land(landing / "empty.json", b"", now): now - timedelta(minutes=10),
        _land(landing / "late" / "cut.json", b'{"resourceType": "Encounter", "id": "t1", ', now): now,
    }
    for path, modified in times.items():
        os.utime(path, (modified.timestamp(), modified.timestamp()))
    config = job_config(root, landing)
    before = status.waiting_files(config, now=now + timedelta(seconds=5))
    first = job.run(config, once=True, spark=spark)
    second = job.run(config, once=True, spark=spark)
    files = sorted(((_uri(p), m) for p, m in times.items()), key=lambda f: f[1])
    return Landed(config, before, files, (first.run_id, second.run_id))


@pytest.mark.spark
def test_landed_files_wait_until_the_job_commits_them(landed: Landed) -> None:
    assert landed.before.files == landed.files
    assert landed.before.count == 3
    assert landed.before.oldest_age_seconds == pytest.approx(2 * 3600 + 5)
    assert status.waiting_files(landed.config) == status.Waiting(0, None, [])


@pytest.mark.spark
def test_collect_equals_what_the_tables_hold(landed: Landed, spark: Any) -> None:
    config = landed.config
    s = status.collect(config, now=NOW, last=5)

    log_rows = read_table(spark, config.table_uri(config.tables.ingest_log))
    assert len(log_rows) == len(s.batches) == 1
    (row,), (batch,) = log_rows, s.batches
    assert batch.batch_key == row["batch_key"]
    assert (
        (batch.files, batch.rows_written, batch.rows_rejected)
        == (3, 3927, 2)
        == (
            row["file_count"],
            row["rows_written"],
            row["rows_rejected"],
        )
    )
    assert batch.commit_instant == row["commit_instant"]
    assert batch.seconds == pytest.approx((row["ended_at"] - row["started_at"]).total_seconds())

    quarantined = read_table(spark, config.table_uri(config.tables.quarantine))
    assert s.quarantine == {"empty_file": 1, "truncated": 1} == Counter(r["reason"] for r in quarantined)

    figures = {t.name: t for t in s.tables}
    bronze_uri = Path(config.table_uri(config.tables.encounter))
    bronze = read_table(spark, str(bronze_uri))
    files = {(r["_hoodie_partition_path"], r["_hoodie_file_name"]) for r in bronze}
    commits = sorted(p.name.split(".")[0] for p in (bronze_uri / ".hoodie").glob("*.commit"))
    b = figures[config.tables.encounter]
    assert b.exists
    assert b.rows == len(bronze) == 3927
    assert b.partitions == len({r["hospital_partition"] for r in bronze}) == 118
    assert b.data_files == len(files)
    assert b.bytes == sum((bronze_uri / partition / name).stat().st_size for partition, name in files)
    assert (b.commits, b.last_commit) == (len(commits), commits[-1])
    assert (b.clusterings, b.last_clustering_at) == (0, None)  # the hourly default: not yet
    for name, rows in ((config.tables.ingest_log, 1), (config.tables.quarantine, 2)):
        assert (figures[name].rows, figures[name].partitions, figures[name].data_files) == (rows, 0, 1)

    as_json = json.loads(json.dumps(s.to_json()))
    assert as_json["waiting"] == {"count": 0, "oldest_age_seconds": None, "files": []}
    assert as_json["quarantine"] == {"empty_file": 1, "truncated": 1}
    assert [t["rows"] for t in as_json["tables"]] == [3927, 1, 2]
    assert as_json["batches"][0]["batch_key"] == row["batch_key"]
    text = status.render_text(s)
    assert "waiting files: 0" in text
    assert "3927" in text and "empty_file" in text and "truncated" in text
    assert [t["pending"] for t in as_json["tables"]] == [[], [], []]  # completed commits are not pending
    assert batch.lag_seconds == pytest.approx((batch.ended_at - landed.files[0][1]).total_seconds(), abs=1e-3)
    assert row["lag_seconds"] == batch.lag_seconds


@pytest.mark.spark
def test_a_run_that_found_nothing_leaves_its_trace(landed: Landed) -> None:
    ingested, found_nothing = landed.runs
    s = status.collect(landed.config)

    assert s.lease is not None and s.lease.released_at is not None and s.lease.acquired_at is not None
    assert (s.lease.owner, s.lease.epoch, s.lease.released, s.run_ingested) == (found_nothing, 2, True, False)
    assert s.batches[0].run_id == ingested
    assert s.lease.acquired_at <= s.lease.released_at <= s.at
    (writer,) = [line for line in status.render_text(s).splitlines() if line.startswith("writer ")]
    assert writer.startswith(f"writer     lease free; the last run {found_nothing} (epoch 2) ended: taken ")
    assert writer.endswith("; it wrote no batch: found nothing new")
    assert s.verdict.state == OK and s.verdict.reason.startswith("no file waits; the last batch committed ")


@pytest.mark.spark
def test_a_file_rewritten_in_place_after_its_commit_counts_as_overwritten(landed: Landed) -> None:
    uri = landed.files[1][0]  # empty.json: committed with the version the checkpoint's source log gave
    path = Path(uri.removeprefix("file:"))
    before = status.backlog(landed.config)
    assert (before.listed, before.listed_committed, before.waiting, before.overwritten) == (3, 3, 0, 0)
    stat = path.stat()
    try:
        path.write_bytes(b'{"resourceType": "Encounter", "id": "corrected"}')
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same time: the size alone tells

        after = status.collect(landed.config)

        assert (after.backlog.overwritten, after.backlog.overwritten_files, after.backlog.waiting) == (1, (uri,), 0)
        lines = status.render_text(after).splitlines()
        at = lines.index(
            "overwritten after they were ingested: 1 (their new content is not in the table;"
            " `bronze-encounter reingest FILE...` takes it)"
        )
        assert lines[at + 1] == f"  {uri}"
    finally:
        path.write_bytes(b"")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert status.backlog(landed.config).overwritten == 0


@pytest.mark.spark
def test_check_exit_codes_through_the_cli_on_real_tables(landed: Landed, capsys: pytest.CaptureFixture[str]) -> None:
    config = landed.config
    args = ["status", "--source", config.source, "--warehouse", config.warehouse, "--check"]

    assert cli.main(args) == 0
    assert capsys.readouterr().out.startswith("OK: no file waits; the last batch committed ")
    late = _land(Path(config.source) / "late.json", b"{}", datetime.now(UTC) - timedelta(minutes=20))
    modified = datetime.fromtimestamp(late.stat().st_mtime, UTC).isoformat()
    try:
        # Commits are recent (this module's run): a file waiting 20 minutes is BEHIND (over 900 s) ...
        assert cli.main([*args, "--set", "status.stalled_seconds=86400"]) == cli.EXIT_BEHIND
        assert capsys.readouterr().out.startswith("BEHIND: 1 file waiting is 20.0m old (status.behind_seconds = 900)")
        # ... and STALLED when a second without a commit is too long.
        assert cli.main([*args, "--set", "status.stalled_seconds=1", "--format", "json"]) == cli.EXIT_STALLED
        shown = json.loads(capsys.readouterr().out)
    finally:
        late.unlink()
    assert (shown["verdict"]["state"], shown["verdict"]["stalled_seconds"]) == ("STALLED", 1)
    assert shown["waiting"]["files"] == [{"uri": _uri(late), "modified": modified}]


# -- the ingest log as status reads it -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    config: JobConfig
    before: list[Batch]  # read from a log an earlier release wrote (no lag_seconds column)
    started: dict[str, datetime]  # batch key -> started_at


def _log_row(key: str, started: datetime, lag: float | None, stale: int | None) -> dict[str, Any]:
    return {
        "batch_key": key,
        "run_id": key.rsplit("-", 1)[0],
        "batch_id": int(key.rsplit("-", 1)[1]),
        "files": [f"file:/landing/{key}.json"],
        "file_count": 1,
        "files_already_committed": 2,
        "rows_in": 9,
        "rows_written": 5,
        "rows_deleted": 1,
        "rows_rejected": 2,
        "rows_skipped": 1,
        "started_at": started,
        "ended_at": started + timedelta(seconds=30),
        "commit_instant": None,
        "delete_requests": 1,
        "rows_stale": stale,
        "lag_seconds": lag,
    }


@pytest.fixture(scope="module")
def logged(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """An ingest log first written without lag_seconds (an earlier release), then with it, out of time order."""
    from streaming.bronze.columns import INGEST_LOG_SCHEMA
    from streaming.lakehouse.hudi import HudiWriter, ingest_log_table

    root = tmp_path_factory.mktemp("logged")
    (root / "landing").mkdir()
    config = job_config(root, root / "landing")
    spec, writer = ingest_log_table(config), HudiWriter(spark)
    started = {f"run-a-{n:06d}": NOW + timedelta(minutes=m) for n, m in ((0, 1), (1, 3), (2, 2), (3, 4))}
    old_schema = INGEST_LOG_SCHEMA.removesuffix(", lag_seconds double")
    assert old_schema != INGEST_LOG_SCHEMA
    old = _log_row("run-a-000000", started["run-a-000000"], None, 0)
    del old["lag_seconds"]
    writer.upsert(spec, spark.createDataFrame([old], old_schema), {})
    before = status.recent_batches(config, 5)
    rows = [
        _log_row("run-a-000001", started["run-a-000001"], 12.5, 0),
        _log_row("run-a-000002", started["run-a-000002"], None, None),  # recovery wrote it: neither is known
        _log_row("run-a-000003", started["run-a-000003"], 30.25, 3),
    ]
    writer.upsert(spec, spark.createDataFrame(rows, INGEST_LOG_SCHEMA), {})
    return Logged(config, before, started)


@pytest.mark.spark
def test_a_log_without_lag_seconds_reads_with_lag_unknown(logged: Logged) -> None:
    assert logged.before == [
        Batch("run-a-000000", "run-a", NOW + timedelta(minutes=1), NOW + timedelta(minutes=1, seconds=30), 1, 2, 5,
              1, 2, 1, 0, 30.0, None, None),
    ]  # fmt: skip


@pytest.mark.spark
def test_batches_newest_first_limited_by_last_with_lag(logged: Logged) -> None:
    batches = status.recent_batches(logged.config, 10)

    assert [b.batch_key for b in batches] == ["run-a-000003", "run-a-000001", "run-a-000002", "run-a-000000"]
    assert [b.started_at for b in batches] == sorted(logged.started.values(), reverse=True)
    assert [(b.lag_seconds, b.rows_stale) for b in batches] == [(30.25, 3), (12.5, 0), (None, None), (None, 0)]
    assert [b.batch_key for b in status.recent_batches(logged.config, 2)] == ["run-a-000003", "run-a-000001"]
    assert status.recent_batches(logged.config, 0) == []


@pytest.mark.spark
def test_status_json_through_the_cli_holds_the_last_batches_with_iso_times(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    config = logged.config
    args = ["status", "--source", config.source, "--warehouse", config.warehouse, "--format", "json", "--last", "2"]

    assert cli.main(args) == 0
    shown = json.loads(capsys.readouterr().out)

    assert [b["batch_key"] for b in shown["batches"]] == ["run-a-000003", "run-a-000001"]
    for batch in shown["batches"]:
        started = datetime.fromisoformat(batch["started_at"])
        assert started == logged.started[batch["batch_key"]] and started.utcoffset() == timedelta(0)
        assert datetime.fromisoformat(batch["ended_at"]) == started + timedelta(seconds=30)
    assert [(b["lag_seconds"], b["files_already_committed"], b["rows_deleted"]) for b in shown["batches"]] == [
        (30.25, 2, 1),
        (12.5, 2, 1),
    ]
    assert datetime.fromisoformat(shown["at"]).utcoffset() == timedelta(0)
