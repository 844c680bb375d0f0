"""`query` at scale: filters pushed to hudi-rs, results streamed, row limits, SQL sources, time travel, bad input.

The slow tests read a table the real job wrote in two commits (Synthea encounters, then one changed and one new):
pushed filters must give exactly the rows an unpushed read gives (and the plain-Python answer), while hudi-rs is
asked for fewer file slices; `--as-of` the first commit gives the first commit's rows.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from helpers import job_config, table_marker

from streaming import config as conf
from streaming.cli import main
from streaming.ops import query as q
from streaming.ops import ready_queries as queries
from streaming.ops.sql_output import TABLE_ROWS, render, write

SCRIPT = Path(sys.executable).with_name("bronze-encounter")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "streaming.cli"]

# A bronze-like schema for the parse-tree tests (the names and types pushdown looks at).
BRONZE = pa.schema(
    [
        ("encounter_id", pa.string()),
        ("status", pa.string()),
        ("hospital_name", pa.string()),
        ("hospital_partition", pa.string()),
        ("admission_time", pa.timestamp("us", tz="UTC")),
        ("is_deleted", pa.bool_()),
    ]
)
LOG = pa.schema([("batch_key", pa.string()), ("batch_id", pa.int64()), ("file_count", pa.int32())])
SCHEMAS = {"bronze_encounter": BRONZE, "bronze_encounter_ingest_log": LOG}


def pushed(sql: str) -> dict[str, list[tuple[str, str, str]]]:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return q.pushdown_filters(con, sql, SCHEMAS)


# -- which filters are pushed ---------------------------------------------------------------------------------


E, L = "bronze_encounter", "bronze_encounter_ingest_log"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT resource_json FROM bronze_encounter WHERE encounter_id = 'e-1'", {E: [("encounter_id", "=", "e-1")]}),
        (
            "SELECT count(*) FROM bronze.bronze_encounter AS e WHERE e.hospital_name = 'St. Mary''s' AND 'x' < status",
            {E: [("hospital_name", "=", "St. Mary's"), ("status", ">", "x")]},
        ),
        (  # hudi-rs splits IN values at commas: escaped, and a backslash doubled
            "SELECT 1 FROM bronze_encounter WHERE status IN ('a,b', 'c\\d') AND hospital_partition NOT IN ('z')",
            {E: [("status", "IN", "a\\,b,c\\\\d"), ("hospital_partition", "NOT IN", "z")]},
        ),
        (  # times as DuckDB reads them against the column: TIMESTAMPTZ in UTC, spelled RFC 3339
            "SELECT 1 FROM bronze_encounter WHERE admission_time BETWEEN '2024-01-01' AND DATE '2024-02-01'"
            " AND admission_time <> TIMESTAMP '2024-01-15 12:30:00.5'",
            {
                E: [
                    ("admission_time", ">=", "2024-01-01T00:00:00.000000Z"),
                    ("admission_time", "<=", "2024-02-01T00:00:00.000000Z"),
                    ("admission_time", "!=", "2024-01-15T12:30:00.500000Z"),
                ]
            },
        ),
        (  # 5e9 does not fit file_count's int32: not pushed
            "SELECT 1 FROM bronze_encounter_ingest_log WHERE batch_id >= -3 AND file_count < 5000000000",
            {L: [("batch_id", ">=", "-3")]},
        ),
        (  # the table's one reference is in a subquery: its WHERE is the only way in
            "SELECT 1 FROM bronze_encounter_ingest_log l WHERE EXISTS"
            " (SELECT 1 FROM bronze_encounter e WHERE e.status = 'done' AND e.encounter_id = l.batch_key)",
            {E: [("status", "=", "done")]},
        ),
        (  # joined: qualified columns only, each table its own; a comparison is false on the NULLs a LEFT JOIN adds
            "SELECT 1 FROM bronze_encounter e LEFT JOIN bronze_encounter_ingest_log l ON e.encounter_id = l.batch_key"
            " WHERE e.status = 'a' AND l.batch_id = 7 AND status = 'b'",
            {E: [("status", "=", "a")], L: [("batch_id", "=", "7")]},
        ),
        (  # a column beats a SELECT alias of the same name in WHERE, in DuckDB and here
            "SELECT upper(status) AS encounter_id FROM bronze_encounter WHERE encounter_id = 'x'",
            {E: [("encounter_id", "=", "x")]},
        ),
    ],
)
def test_conjunctive_comparisons_on_a_table_named_once_are_pushed(sql: str, expected: dict[str, Any]) -> None:
    assert pushed(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 FROM bronze_encounter WHERE encounter_id = 'a' OR status = 'b'",  # OR
        "SELECT 1 FROM bronze_encounter a JOIN bronze_encounter b ON a.encounter_id = b.encounter_id"
        " WHERE a.status = 'x'",  # named twice: one scan's filter would reach the other
        "SELECT 1 FROM bronze_encounter WHERE status = 'x' UNION ALL SELECT 1 FROM bronze.bronze_encounter",
        "SELECT 1 FROM bronze_encounter e JOIN bronze_encounter_ingest_log l ON true WHERE status = 'x'",  # unqualified
        "SELECT 1 FROM bronze_encounter e ASOF JOIN bronze_encounter_ingest_log l ON e.admission_time >= l.batch_id"
        " WHERE e.status = 'x'",
        "SELECT 1 FROM bronze_encounter_ingest_log l POSITIONAL JOIN bronze_encounter e WHERE e.status = 'x'",
        "SELECT 1 FROM bronze_encounter_ingest_log l SEMI JOIN bronze_encounter e ON true WHERE e.status = 'x'",
        "SELECT 1 FROM bronze_encounter USING SAMPLE 10 WHERE status = 'x'",  # the sample comes before WHERE
        "SELECT 1 FROM bronze_encounter TABLESAMPLE 10% WHERE status = 'x'",
        "SELECT 1 FROM bronze_encounter AS e(a, b) WHERE b = 'x'",  # columns renamed
        "SELECT 1 FROM bronze_encounter WHERE status = 'x' UNION ALL SELECT 1 FROM query_table('bronze_encounter')",
        "SELECT 1 FROM bronze_encounter WHERE status = 'x' UNION ALL SELECT 1 FROM __hudi_bronze_encounter",
        "SELECT 1 FROM bronze_encounter WHERE status IN ('x ', 'y')",  # hudi-rs would trim 'x '
        "SELECT 1 FROM bronze_encounter WHERE status IN ('', 'y')",  # ... and drop ''
        "SELECT 1 FROM bronze_encounter WHERE lower(status) = 'x' AND status || '' = 'y'",  # expressions
        "SELECT 1 FROM bronze_encounter WHERE status = NULL AND encounter_id = 5 AND status = 'x'::VARCHAR",
        "SELECT 1 FROM bronze_encounter WHERE admission_time = 5 AND admission_time > TRY_CAST('x' AS DATE)",
        "SELECT 1 FROM bronze_encounter WHERE admission_time > 'not a time' AND is_deleted = false",
        "SELECT 1 FROM bronze_encounter WHERE status IS NOT DISTINCT FROM 'x' AND status NOT BETWEEN 'a' AND 'b'",
        "SELECT 1 FROM bronze_encounter_ingest_log WHERE batch_id = 1.0 AND batch_id = '1'",  # other literal kinds
        "SELECT 1 FROM bronze_encounter e WHERE bronze_encounter.status = 'x'",  # the alias hides the name
        "SELECT status FROM bronze_encounter GROUP BY status HAVING status = 'x'",  # not WHERE
        "DESCRIBE bronze_encounter",
        "SELECT 1 FROM bronze_encounter WHERE status = 'x'; SELECT 2",
    ],
)
def test_anything_not_provably_safe_is_not_pushed(sql: str) -> None:
    assert pushed(sql) == {}


# -- streamed output --------------------------------------------------------------------------------------------


def _batches() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    table = pa.table(
        {
            "n": pa.array(range(25), pa.int64()),
            "name": [f'row, {i}\n"quoted"' if i % 5 == 0 else f"r{i}" for i in range(25)],
            "at": pa.array(
                [None if i % 3 else 1_700_000_000_000_000 + i for i in range(25)], pa.timestamp("us", "UTC")
            ),
            "tags": [[str(i)] if i % 2 else None for i in range(25)],
        }
    )
    return table.schema, table.to_batches(max_chunksize=4)  # 7 batches


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "table"])
def test_written_batch_by_batch_equals_the_whole_result_rendered(fmt: str) -> None:
    schema, batches = _batches()
    out = io.StringIO()
    written = write(iter(batches), schema, fmt, out)
    assert out.getvalue() == render(pa.Table.from_batches(batches), fmt)
    assert (written.rows, written.total, written.hidden) == (25, 25, 0)


def test_each_format_parses_back_to_the_rows() -> None:
    schema, batches = _batches()
    table = pa.Table.from_batches(batches)
    out = io.StringIO()
    write(iter(batches), schema, "ndjson", out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows == json.loads(render(table, "json"))
    assert [r["n"] for r in rows] == list(range(25))
    assert rows[5]["name"] == 'row, 5\n"quoted"' and rows[1]["tags"] == ["1"] and rows[0]["at"].endswith("+00:00")
    parsed = list(csv.reader(io.StringIO(render(table, "csv"))))
    assert parsed[0] == ["n", "name", "at", "tags"] and [int(r[0]) for r in parsed[1:]] == list(range(25))
    assert parsed[6][1] == 'row, 5\n"quoted"'
    assert render(table.slice(0, 0), "json") == "[]\n" and render(table.slice(0, 0), "ndjson") == ""


@pytest.mark.parametrize("limit", [1, 4, 10, 24, 25, 30])
def test_a_limit_stops_reading_and_can_count_the_rest(limit: int) -> None:
    schema, batches = _batches()
    pulled: list[pa.RecordBatch] = []

    def source() -> Any:
        for batch in batches:
            pulled.append(batch)
            yield batch

    out = io.StringIO()
    written = write(source(), schema, "ndjson", out, limit=limit)
    shown = min(limit, 25)
    assert [json.loads(line)["n"] for line in out.getvalue().splitlines()] == list(range(shown))
    assert written.rows == shown
    assert written.total == (25 if limit >= 25 else None)  # stopped: the rest was not read
    assert len(pulled) < len(batches) or limit >= 24
    counted = write(iter(batches), schema, "table", io.StringIO(), limit=limit, count=True)
    assert (counted.rows, counted.total, counted.hidden) == (shown, 25, 25 - shown)


# -- the command line (no tables needed: DuckDB's range() makes the rows) ----------------------------------------


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "query", *args], capture_output=True, text=True, input=stdin, timeout=120)


def one_line_error(done: subprocess.CompletedProcess[str] | tuple[int, str], *contains: str) -> None:
    code, err = (done.returncode, done.stderr) if isinstance(done, subprocess.CompletedProcess) else done
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bronze-encounter: "), err
    for text in contains:
        assert text in lines[0]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["query", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_shows_the_default_cap_and_says_how_many_more(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "--warehouse", str(tmp_path), "SELECT range AS n FROM range(1500)")
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == f"({TABLE_ROWS} rows)" and len(lines) == TABLE_ROWS + 3
    assert err.strip() == "bronze-encounter: 500 more rows not shown (of 1,500); --limit N shows N, --limit 0 all"
    code, out, err = cli(capsys, "--warehouse", str(tmp_path), "--limit", "0", "SELECT range AS n FROM range(1500)")
    assert (code, out.splitlines()[-1], err) == (0, "(1500 rows)", "")
    code, out, err = cli(capsys, "--warehouse", str(tmp_path), "--limit", "3", "SELECT range AS n FROM range(1500)")
    assert (code, out.splitlines()[-1], err) == (0, "(3 rows)", "")  # asked for: no note


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_limit_applies_to_every_format_and_scripts_get_everything_by_default(
    fmt: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sql = "SELECT range AS n, 'x' || range AS s FROM range(2500)"
    expected = pa.table({"n": pa.array(range(2500), pa.int64()), "s": [f"x{i}" for i in range(2500)]})
    code, out, err = cli(capsys, "--warehouse", str(tmp_path), "--format", fmt, sql)
    assert (code, err) == (0, "")
    assert out == render(expected, fmt)  # all 2,500 rows, streamed, byte for byte the rendered result
    code, out, err = cli(capsys, "--warehouse", str(tmp_path), "--format", fmt, "--limit", "2", sql)
    assert (code, out, err) == (0, render(expected.slice(0, 2), fmt), "")


def test_sql_from_a_file_and_from_stdin(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql_file = tmp_path / "q.sql"
    sql_file.write_text("-- a comment\nSELECT 6 * 7 AS answer\n")
    code, out, _ = cli(capsys, "--warehouse", str(tmp_path), "--format", "csv", "-f", str(sql_file))
    assert (code, out) == (0, "answer\n42\n")
    for args in (["-"], ["-f", "-"], []):
        monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 'from stdin' AS s"))
        code, out, _ = cli(capsys, "--warehouse", str(tmp_path), "--format", "csv", *args)
        assert (code, out) == (0, "s\nfrom stdin\n"), args
    done = run_cli("--warehouse", str(tmp_path), "--format", "json", stdin="SELECT 1 AS one")  # a real pipe
    assert (done.returncode, json.loads(done.stdout)) == (0, [{"one": 1}])


def test_ready_queries_by_name_and_their_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "--list")
    assert code == 0
    assert out.splitlines() == [
        f"{r.name:<{max(len(x.name) for x in queries.QUERIES)}}  {r.description}" for r in queries.QUERIES
    ]
    config = job_config(tmp_path, tmp_path / "landing")
    table_marker(config, "bronze_encounter_ingest_log")  # the ready queries read bronze_encounter only
    # The view queries read tables only a job running those views writes (tests/test_views_queries.py runs them).
    for ready in (r for r in queries.QUERIES if not r.views):
        code, out, err = cli(capsys, "--warehouse", config.warehouse, "--format", "json", "--name", ready.name)
        assert (code, err) == (0, "")
        expected = q.query(config, ready.sql)
        assert json.loads(out) == json.loads(render(expected, "json")) == []  # no tables yet: each runs, empty


def test_each_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = ["--warehouse", str(tmp_path)]
    one_line_error(cli(capsys, *wh, "--name", "nope")[::2], "no ready query named 'nope'", "utilisation")
    one_line_error(cli(capsys, *wh, "-f", str(tmp_path / "missing.sql"))[::2], "missing.sql", "No such file")
    (tmp_path / "binary.sql").write_bytes(b"\xff\xfe\x00")
    one_line_error(cli(capsys, *wh, "-f", str(tmp_path / "binary.sql"))[::2], "binary.sql")
    (tmp_path / "empty.sql").write_text("  \n")
    one_line_error(cli(capsys, *wh, "-f", str(tmp_path / "empty.sql"))[::2], "no SQL in")
    one_line_error(cli(capsys, *wh, " ")[::2], "no SQL in the argument")
    for bad in ("x", "-1", "1.5", ""):
        one_line_error(cli(capsys, *wh, "--limit", bad, "SELECT 1")[::2], "--limit")
    for bad in ("yesterday", "20240230120000", "2024-13-01", "1700000000"):
        one_line_error(cli(capsys, *wh, "--as-of", bad, "SELECT 1")[::2], "--as-of")
    one_line_error(cli(capsys, *wh, "-f", str(tmp_path / "x.sql"), "SELECT 1")[::2], "one way")
    one_line_error(cli(capsys, *wh, "--name", "utilisation", "SELECT 1")[::2], "one way")
    monkeypatch.setattr(sys, "stdin", _Terminal())
    one_line_error(cli(capsys, *wh)[::2], "no SQL")
    one_line_error(cli(capsys, "--set", "no.such_key=1", "SELECT 1")[::2], "unknown setting")  # a ConfigError


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    one_line_error(run_cli("--warehouse", str(tmp_path), "--name", "nope"), "no ready query")
    one_line_error(run_cli("--warehouse", str(tmp_path), "--limit", "many", "SELECT 1"), "--limit")


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    sql = "SELECT range AS n, repeat('x', 200) AS s FROM range(300000)"  # far more than a pipe buffers
    for args in (["--format", "csv", "--limit", "0"], ["--format", "ndjson"], ["--format", "table"]):
        head = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert head.stdin is not None and head.stdout is not None
        done = subprocess.run(
            [*CLI, "query", "--warehouse", str(tmp_path), *args, sql],
            stdout=head.stdin,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        head.stdin.close()
        assert head.stdout.read().strip(), args
        head.wait(60)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_as_of_spellings() -> None:
    assert q.as_of_instant("20240301120000") == "20240301120000"
    assert q.as_of_instant(" 20240301120000123 ") == "20240301120000123"
    assert q.as_of_instant("2024-03-01T12:00:00Z") == "2024-03-01T12:00:00.000Z"
    assert q.as_of_instant("2024-03-01 12:00") == "2024-03-01T12:00:00.000Z"  # naive: UTC
    assert q.as_of_instant("2024-03-01T13:00:00+01:00") == "2024-03-01T12:00:00.000Z"
    assert q.as_of_instant("2024-03-01") == "2024-03-01T00:00:00.000Z"


# -- against a table the job wrote in two commits ---------------------------------------------------------------


@dataclass(frozen=True)
class TwoCommits:
    config: conf.JobConfig
    first: list[dict[str, Any]]  # the encounters of the first commit
    now: dict[str, dict[str, Any]]  # every encounter after the second, by id
    changed: str  # the id the second commit changed
    added: str  # the id the second commit added
    first_instant: str  # the first commit's instant


@pytest.fixture(scope="module")
def two_commits(spark: Any, samples: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoCommits:
    """900 Synthea encounters in a first commit; then one of them changed (cancelled) and one more added."""
    from streaming.pipeline import job

    root = tmp_path_factory.mktemp("query-scale")
    lines = [line for line in (samples / "encounters.ndjson").read_text().splitlines() if line.strip()]
    first = [json.loads(line) for line in lines[:900]]
    landing = root / "landing"
    landing.mkdir()
    (landing / "a.ndjson").write_text("\n".join(lines[:900]) + "\n")
    config = job_config(root, landing)
    assert job.run(config, once=True, spark=spark).rows_written == 900
    first_instant = q.query(config, "SELECT commit_instant FROM bronze_encounter_ingest_log").column(0)[0].as_py()
    changed = {**first[7], "status": "cancelled", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}
    added = json.loads(lines[900])
    (landing / "b.ndjson").write_text(json.dumps(changed) + "\n" + json.dumps(added) + "\n")
    assert job.run(config, once=True, spark=spark).rows_written == 2
    now = {e["id"]: e for e in first} | {changed["id"]: changed, added["id"]: added}
    return TwoCommits(config, first, now, changed["id"], added["id"], first_instant)


def _hospital(e: dict[str, Any]) -> str:
    return e["serviceProvider"]["display"]


def _read(config: conf.JobConfig, sql: str) -> tuple[list[dict[str, Any]], q.TableRead]:
    with q.stream(config, sql) as result:
        rows = [row for batch in result for row in batch.to_pylist()]
    return rows, result.reads["bronze_encounter"]


def _unpushable(sql: str) -> str:
    """The same SQL with its WHERE wrapped in `(...) OR false`: same rows, nothing pushed."""
    head, where = sql.split(" WHERE ", 1)
    condition, *group = where.split(" GROUP BY ", 1)
    return f"{head} WHERE ({condition}) OR false" + (f" GROUP BY {group[0]}" if group else "")


def _by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


@pytest.mark.spark
def test_pushed_filters_give_the_same_rows_and_read_fewer_files(two_commits: TwoCommits) -> None:
    config, now = two_commits.config, two_commits.now
    some = sorted(now)[123]
    hospital = _hospital(now[some])
    quoted = hospital.replace("'", "''")
    cases = {
        f"SELECT encounter_id, hospital_name, status, length(resource_json) AS n FROM bronze_encounter"
        f" WHERE encounter_id = '{some}'": [some],
        f"SELECT encounter_id FROM bronze_encounter WHERE hospital_name = '{quoted}'": sorted(
            i for i, e in now.items() if _hospital(e) == hospital
        ),
        f"SELECT encounter_id FROM bronze_encounter WHERE hospital_partition = '{quoted}'"
        " AND status IN ('finished', 'cancelled')": sorted(
            i for i, e in now.items() if _hospital(e) == hospital and e["status"] in ("finished", "cancelled")
        ),
        "SELECT encounter_id FROM bronze_encounter WHERE admission_time >= '2015-01-01'"
        " AND admission_time < TIMESTAMP '2016-01-01'": sorted(
            i for i, e in now.items() if "2015-01-01" <= _start_utc(e) < "2016-01-01"
        ),
    }
    for sql, ids in cases.items():
        assert ids, sql  # each case selects something
        rows, read = _read(config, sql)
        plain, full = _read(config, _unpushable(sql))
        assert sorted(r["encounter_id"] for r in rows) == ids, sql
        assert sorted(rows, key=str) == sorted(plain, key=str), sql
        assert read.filters and not full.filters, sql
        assert full.slices_read == full.slices > read.slices_read >= 1, (sql, read, full)
    point, _ = _read(config, next(iter(cases)))
    assert (
        point
        == [
            {
                "encounter_id": some,
                "hospital_name": hospital,
                "status": now[some]["status"],
                "n": point[0]["n"],
            }
        ]
        and point[0]["n"] > 100
    )


def _start_utc(e: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    return datetime.fromisoformat(e["period"]["start"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.spark
def test_a_table_scanned_twice_reads_whole_and_answers_right(two_commits: TwoCommits) -> None:
    # Named twice, nothing is pushed; each scan gets a stream of its own (a used-up one would give no rows).
    sql = (
        "SELECT count(*) AS n FROM bronze_encounter a JOIN bronze_encounter b ON a.patient_ref = b.patient_ref"
        " WHERE a.status = 'cancelled'"
    )
    patients = Counter(e["subject"]["reference"] for e in two_commits.now.values())
    expected = sum(patients[e["subject"]["reference"]] for e in two_commits.now.values() if e["status"] == "cancelled")
    with q.stream(two_commits.config, sql) as result:
        assert [row for batch in result for row in batch.to_pylist()] == [{"n": expected}]
    read = result.reads["bronze_encounter"]
    assert read.filters == () and read.slices_read == read.slices  # both scans, every slice
    readmissions = q.query(two_commits.config, queries.READMISSIONS_30D.sql)  # its CTE is used twice
    assert readmissions.num_rows > 0


@pytest.mark.spark
def test_as_of_the_first_commit_reads_its_rows(two_commits: TwoCommits, capsys: pytest.CaptureFixture[str]) -> None:
    config, changed, added = two_commits.config, two_commits.changed, two_commits.added
    sql = "SELECT encounter_id, status FROM bronze_encounter"
    latest = _by(q.query(config, sql).to_pylist(), "encounter_id")
    older = _by(q.query(config, sql, as_of=two_commits.first_instant).to_pylist(), "encounter_id")
    assert {i: r["status"] for i, r in older.items()} == {e["id"]: e["status"] for e in two_commits.first}
    assert {i: r["status"] for i, r in latest.items()} == {i: e["status"] for i, e in two_commits.now.items()}
    assert latest[changed]["status"] == "cancelled" != older[changed]["status"] and added not in older
    where = ["--warehouse", config.warehouse, "--format", "json"]
    lookup = f"SELECT status FROM bronze_encounter WHERE encounter_id = '{changed}'"
    code = main(["query", *where, "--as-of", two_commits.first_instant, lookup])
    assert (code, json.loads(capsys.readouterr().out)) == (0, [{"status": older[changed]["status"]}])
    code = main(["query", *where, "--as-of", "2000-01-01T00:00:00Z", "SELECT count(*) AS n FROM bronze_encounter"])
    assert (code, json.loads(capsys.readouterr().out)) == (0, [{"n": 0}])  # before the first commit: empty


@pytest.mark.spark
def test_ready_query_by_name_and_from_a_file_match_the_sql(
    two_commits: TwoCommits, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    where = ["--warehouse", two_commits.config.warehouse, "--format", "csv", "--limit", "0"]
    expected = render(q.query(two_commits.config, queries.UTILISATION.sql), "csv")
    assert expected.count("\n") > 10
    assert main(["query", *where, "--name", "utilisation"]) == 0
    assert capsys.readouterr().out == expected
    (tmp_path / "u.sql").write_text(queries.UTILISATION.sql)
    assert main(["query", *where, "-f", str(tmp_path / "u.sql")]) == 0
    assert capsys.readouterr().out == expected


@pytest.mark.spark
def test_a_file_that_fails_mid_read_names_its_table(two_commits: TwoCommits, tmp_path: Path) -> None:
    import shutil

    warehouse = Path(two_commits.config.warehouse)
    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse / "bronze_encounter", copy / "bronze_encounter")
    broken = sorted((copy / "bronze_encounter").glob("hospital_partition=*/*.parquet"))[0]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    config = job_config(tmp_path, tmp_path / "landing")
    with pytest.raises(q.TableUnreadable, match=r"table bronze_encounter at .* could not be read"):
        q.query(config, "SELECT count(*), max(resource_json) FROM bronze_encounter")
