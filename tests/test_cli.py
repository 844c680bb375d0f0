"""The CLI as a user runs it: help for every option, exit codes, what a run prints on a pipe and on a terminal."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streaming import cli
from streaming import config as conf
from streaming.cli import main, parser, progress
from streaming.generate import generate

# The console script the package installs, as a user calls it (the module as a fallback in an uninstalled tree).
SCRIPT = Path(sys.executable).with_name("bronze-encounter")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "streaming.cli"]

# Default output must not show these: JVM start-up lines and warnings nobody can act on.
JVM_NOISE = (
    "resolves to a loopback address",
    "Set SPARK_LOCAL_IP",
    "Unable to load native-hadoop library",
    'Setting default log level to "WARN"',
    "To adjust logging level use sc.setLogLevel",
    "Unable to get Instrumentation",
    "Unable to attach Serviceability Agent",
    "openjdk.jol",
    "hudi-defaults.conf",
    "ResolveWriteToStream",
    "StatusLogger",
    "log4j",
)
LOG4J_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|INFO|ERROR) \w+: ", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SETTINGS_FLAGS = {
    "--config",
    "--env",
    "--source",
    "--warehouse",
    "--checkpoint",
    "--set",
    "--ledger-backend",
    "--ledger-table",
    "--ledger-path",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    top = parser()
    action = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flat(text: str) -> str:
    """Text without whitespace: argparse wraps help lines (even at hyphens) to the terminal's width."""
    return "".join(text.split())


# -- help ------------------------------------------------------------------------------------------------------


def test_top_level_help_says_what_the_tool_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = _flat(capsys.readouterr().out)
    assert _flat("Ingest FHIR Encounter files into the Apache Hudi table bronze_encounter, exactly once.") in text
    assert _flat("Parses arguments") not in text
    for name, command in _commands().items():
        assert _flat(command.description.split(".")[0]) in text, name  # each command with its one-line summary
    assert _flat("exit codes: 0 done, 1 unexpected error, 2 bad input, 3 writer lease held elsewhere") in text


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_is_explained_in_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = _commands()[name]
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    text = _flat(capsys.readouterr().out)
    formatter = command._get_formatter()
    for action in command._actions:
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {label}: no help text"
        explained = formatter._expand_help(action)
        assert len(explained.split()) >= 3, f"{name} {label}: help too short to explain anything: {explained!r}"
        assert _flat(explained) in text, f"{name} {label}: help text missing from --help"
        for shown in action.option_strings or [action.metavar or action.dest]:
            assert shown in text, f"{name}: {shown} missing from --help"
        takes_value = action.nargs != 0 and action.option_strings and action.choices is None
        if takes_value and action.dest != "help":
            assert "e.g." in explained, f"{name} {label}: no example"
        if action.default not in (None, False, [], argparse.SUPPRESS):
            assert f"default: {action.default}" in explained, f"{name} {label}: default not stated"


def test_commands_that_need_settings_take_the_same_flags() -> None:
    commands = _commands()
    for name in ("run", "query", "status", "reingest", "replay-quarantine"):
        flags = {s for a in commands[name]._actions for s in a.option_strings}
        assert flags >= SETTINGS_FLAGS, f"{name} lacks {SETTINGS_FLAGS - flags}"


@pytest.mark.parametrize(
    ("name", "extra"),
    [("run", []), ("query", ["SELECT 1"]), ("status", []), ("reingest", ["a.ndjson"]), ("replay-quarantine", [])],
)
def test_settings_precedence_is_the_same_everywhere(tmp_path: Path, name: str, extra: list[str]) -> None:
    file = tmp_path / "job.toml"
    file.write_text('warehouse = "s3a://from-file/wh"\n[ledger]\nbackend = "dynamodb"\ntable = "from-file"\n')
    args = parser().parse_args(
        [name, "--config", str(file), "--ledger-table", "from-flag", "--set", "fhir.max_depth=9", *extra]
    )
    config = cli.load_config(args)
    assert config.warehouse == "s3a://from-file/wh"  # file over default
    assert (config.ledger.backend, config.ledger.table) == ("dynamodb", "from-flag")  # flag over file
    assert config.fhir.max_depth == 9
    assert config.spark.quiet is True
    assert config.metrics.backend == conf.MetricsConfig().backend  # default where neither says anything


def test_verbose_shows_the_jvm_and_keeps_a_louder_level(tmp_path: Path) -> None:
    quiet = cli.load_config(parser().parse_args(["run"]))
    verbose = cli.load_config(parser().parse_args(["run", "--verbose"]))
    assert (quiet.spark.quiet, quiet.spark.log_level) == (True, "ERROR")  # checkpoints_conf/local.toml
    assert (verbose.spark.quiet, verbose.spark.log_level) == (False, "WARN")
    louder = cli.load_config(parser().parse_args(["run", "-v", "--set", "spark.log_level=INFO"]))
    assert louder.spark.log_level == "INFO"


def test_glue_arguments_still_parse() -> None:
    from streaming.cli import glue_entry

    config = glue_entry.load_config(
        ["--JOB_ID", "j_1", "--source", "s3://landing/in/", "--ledger-table", "t1", "--job-bookmark-option", "x"]
    )
    assert (config.source, config.ledger.table, config.ledger.backend) == ("s3://landing/in/", "t1", "dynamodb")
    assert config.metrics.backend == "cloudwatch"  # checkpoints_conf/glue.toml


def test_config_errors_exit_2_with_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "--source", str(tmp_path), "--warehouse", "s3a://wh-bucket/x", "--once"])
    assert code == 2
    assert "ledger.path must be set" in capsys.readouterr().err
    code = main(["run", "--set", "fhir.max_depth=deep", "--once"])
    assert code == 2
    assert "fhir.max_depth must be int" in capsys.readouterr().err
    code = main(["run", "--set", "metrics.backend=statsd", "--source", str(tmp_path), "--once"])
    assert code == 2
    assert "unknown metrics.backend 'statsd'" in capsys.readouterr().err


def test_query_prints_and_a_bad_query_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["query", "--warehouse", str(tmp_path), "--format", "json", "SELECT 6 * 7 AS answer"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"answer": 42}]
    assert main(["query", "--warehouse", str(tmp_path), "SELEC 1 FROM bronze_encounter"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bronze-encounter: ") and "SELEC" in captured.err


def test_batch_line_has_the_batch_numbers() -> None:
    from streaming.pipeline.batch import BatchResult
    from streaming.pipeline.deps import BatchStats

    ended = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = BatchResult(
        "run-000003",
        ("file:/l/a.ndjson", "file:/l/b.ndjson"),
        1,
        BatchStats(rows_in=9, rows_written=6, rows_deleted=1, rows_rejected=2, rows_skipped=3),
        batch_id=3,
        seconds=2.25,
        oldest_modified=datetime(2026, 1, 2, 3, 3, 5, tzinfo=UTC),
        ended_at=ended,
        services=("clustering",),
        services_failed=("clustering",),
        log_rows=4,
    )
    assert progress.batch_line(result) == {
        "event": "batch",
        "batch_id": 3,
        "batch_key": "run-000003",
        "files": 2,
        "files_already_committed": 1,
        "rows_in": 9,
        "rows_written": 6,
        "rows_deleted": 1,
        "rows_rejected": 2,
        "rows_skipped": 3,
        "rows_stale": 0,
        "seconds": 2.25,
        "lag_seconds": 60.0,
        "services": ["clustering"],
        "services_failed": ["clustering"],
        "log_rows_written": 4,
    }


def test_reingest_and_replay_print_batch_lines_and_a_summary_on_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    from streaming.pipeline.batch import BatchResult
    from streaming.pipeline.deps import BatchStats
    from streaming.pipeline.job import RunSummary
    from streaming.pipeline.reingest import ReplayResult

    batch = BatchResult("run-x-000000", ("s3://l/a.ndjson",), 0, BatchStats(rows_in=5, rows_written=4, rows_rejected=1))
    summary = RunSummary("run-x", batches=[batch], seconds=1.26)
    progress.print_batches(summary)  # capsys's stdout is no terminal: one JSON line per batch
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [progress.batch_line(batch)]
    assert progress.summary_line(summary) == "run run-x: 1 batches, 1 files, 4 rows written, 1 rejected, 1.3s"
    replay = ReplayResult(("s3://l/a.ndjson", "s3://l/b.ndjson"), 3, 1, summary)
    assert progress.replay_line(replay) == (
        "replay run-x: 2 files taken again, 3 quarantine rows fixed, 1 still quarantined, 4 rows written"
    )


def test_demo_summary_on_a_pipe_lists_rows_per_hospital_and_what_to_try(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from streaming.cli.demo import DemoReport
    from streaming.pipeline.batch import BatchResult
    from streaming.pipeline.deps import BatchStats
    from streaming.pipeline.job import RunSummary

    batch = BatchResult("run-d-000000", ("a", "b"), 0, BatchStats(rows_in=7, rows_written=6, rows_rejected=1))
    report = DemoReport(
        landing=tmp_path / "landing",
        warehouse=tmp_path / "wh",
        files_generated=2,
        encounters_generated=7,
        summary=RunSummary("run-d", batches=[batch], seconds=3.04),
        table="bronze_encounter",
        hospitals=[("Alpha Clinic", 4), ("Beta Hospital", 2)],
        paths={"table": "T", "ledger": "L"},
    )
    progress.print_demo(report)
    assert capsys.readouterr().out.splitlines() == [
        "",
        f"demo: 2 files with 7 encounters generated in {tmp_path / 'landing'}",
        "      ingested 2 files in 1 batch(es): 6 rows written, 1 rejected, 3.0s",
        "      bronze_encounter holds 6 rows:",
        "             4  Alpha Clinic",
        "             2  Beta Hospital",
        "      table:      T",
        "      ledger:     L",
        "try next:",
        f"  bronze-encounter status --source {tmp_path / 'landing'} --warehouse {tmp_path / 'wh'}",
        f'  bronze-encounter query --warehouse {tmp_path / "wh"} "SELECT hospital_name, count(*) FROM bronze_encounter'
        ' GROUP BY 1"',
    ]


# -- runs (a real job process each) ----------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())


def _landing(root: Path) -> tuple[Path, int, int]:
    """Three generated files plus one broken line: (folder, rows written, rows rejected) expected."""
    generated = generate(root, files=3, per_file=6, seed=3)
    (root / "broken.ndjson").write_text('{"resourceType": "Encounter", "id": "half\n')
    return root, len(generated.encounter_ids), 1


def _ingest_log(warehouse: Path) -> list[dict[str, Any]]:
    from hudi import HudiTableBuilder

    table = HudiTableBuilder.from_base_uri(str(warehouse / "bronze_encounter_ingest_log")).build()
    return [row for batch in table.read() for row in batch.to_pylist()]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@pytest.mark.job
def test_run_prints_one_json_line_per_batch_matching_the_ingest_log(tmp_path: Path) -> None:
    landing, written, rejected = _landing(tmp_path / "landing")
    mtimes = {f"file:{p.resolve()}": datetime.fromtimestamp(p.stat().st_mtime, UTC) for p in landing.iterdir()}
    args = ("run", "--source", str(landing), "--warehouse", str(tmp_path / "wh"), "--once")

    first = _run(*args, "--max-files-per-trigger", "2")
    finished = datetime.now(UTC)
    assert first.returncode == 0, first.stderr[-2000:]

    *lines, last = first.stdout.splitlines()
    batches = [json.loads(line) for line in lines]  # every line before the summary is one JSON object
    assert [b["event"] for b in batches] == ["batch", "batch"]  # 4 files, at most 2 per batch
    assert last.startswith("run ") and f"2 batches, 4 files, {written} rows written, {rejected} rejected" in last

    log = {row["batch_key"]: row for row in _ingest_log(tmp_path / "wh")}
    assert sorted(log) == sorted(b["batch_key"] for b in batches)
    for line in batches:
        row = log[line["batch_key"]]
        assert line["batch_id"] == row["batch_id"]
        assert line["files"] == row["file_count"] == len(row["files"])
        for key in ("files_already_committed", "rows_in", "rows_written", "rows_deleted", "rows_rejected"):
            assert line[key] == row[key], key
        assert line["rows_skipped"] == row["rows_skipped"]
        oldest = min(mtimes[uri] for uri in row["files"])
        assert (_utc(row["ended_at"]) - oldest).total_seconds() <= line["lag_seconds"]  # the batch ended later
        assert line["lag_seconds"] <= (finished - oldest).total_seconds()
        assert 0 < line["seconds"] <= (finished - _utc(row["started_at"])).total_seconds()
    assert sum(b["rows_written"] for b in batches) == written
    assert sum(b["rows_rejected"] for b in batches) == rejected

    for noise in JVM_NOISE:
        assert noise not in first.stderr, f"{noise!r} in the default stderr"
    assert not LOG4J_LINE.search(first.stderr), first.stderr[-2000:]
    assert (
        "INFO streaming.pipeline.batch: batch 0 (" in first.stderr
    )  # the job's own log lines stay (the harness reads them)

    # Run again, verbose (one JVM for both checks): nothing new, and the JVM's own output is back.
    second = _run(*args, "--verbose")
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(second.stdout.splitlines()) == 1  # nothing new: Spark runs no batch, so no batch line
    assert second.stdout.startswith("run ") and ": 0 batches, 0 files, 0 rows written, 0 rejected" in second.stdout
    assert (tmp_path / "wh" / "_checkpoints" / "bronze_encounter").is_dir()
    assert (tmp_path / "wh" / "_ledger" / "ledger.sqlite3").is_file()
    assert 'Setting default log level to "WARN"' in second.stderr  # Spark's own log4j profile, not ours
    assert re.search(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d WARN ResolveWriteToStream: ", second.stderr, re.MULTILINE)


@pytest.mark.job
def test_terminal_gets_live_progress_and_no_info_lines(tmp_path: Path) -> None:
    landing, written, rejected = _landing(tmp_path / "landing")
    args = ["run", "--source", str(landing), "--warehouse", str(tmp_path / "wh"), "--once"]
    controller, terminal = pty.openpty()
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*CLI, *args],
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=stderr,
            env={**os.environ, "COLUMNS": "160", "TERM": "xterm-256color"},
        )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=60) == 0, err.read_text()[-2000:]

    screen = ANSI.sub("", b"".join(chunks).decode("utf-8", errors="replace"))
    assert f"files 4 · rows {written + rejected}" in screen  # the live line, counters of the last refresh
    assert "rows/s" in screen and "lag " in screen and "batches 1" in screen
    assert f"1 batches, 4 files, {written} rows written, {rejected} rejected" in screen  # the final summary
    assert '"event": "batch"' not in screen  # structured lines are for pipes
    logged = err.read_text()
    assert " INFO " not in logged and "INFO streaming" not in logged  # below WARNING is not shown on a terminal
    for noise in JVM_NOISE:
        assert noise not in logged and noise not in screen, noise


@pytest.mark.job
def test_demo_ends_with_commands_that_answer_without_code(tmp_path: Path) -> None:
    """The demo's closing hints run as printed, and `query` counts the same rows per hospital as the demo."""
    demo = _run("demo", "--workdir", str(tmp_path / "demo"), "--files", "4", "--per-file", "15", "--seed", "3")
    assert demo.returncode == 0, demo.stderr[-2000:]
    lines = demo.stdout.splitlines()
    (batch,) = [json.loads(line) for line in lines if line.startswith("{")]
    start = lines.index(f"      bronze_encounter holds {batch['rows_written']} rows:")
    shown = {}
    for line in lines[start + 1 :]:
        if not line.startswith("        "):
            break
        count, name = line.strip().split("  ", 1)
        shown[name] = int(count)
    hints = lines[lines.index("try next:") + 1 :]
    assert [h.split()[1] for h in hints] == ["status", "query"]

    status = _run(*hints[0].split()[1:])
    assert status.returncode == 0 and "waiting files: 0" in status.stdout, status.stderr[-2000:]
    sql = hints[1].split('"')[1]
    query = _run(*hints[1].split('"')[0].split()[1:], "--format", "json", sql)
    assert query.returncode == 0, query.stderr[-2000:]
    assert {r["hospital_name"]: r["count_star()"] for r in json.loads(query.stdout)} == shown
    assert sum(shown.values()) == batch["rows_written"] > 0


def test_the_demo_names_the_cli_by_the_path_it_was_started_by_when_not_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After `make demo` the CLI lives in .venv/bin, not on PATH: the commands it suggests must work as typed."""
    monkeypatch.setattr(progress.shutil, "which", lambda _: None)
    monkeypatch.setattr(sys, "argv", [".venv/bin/bronze-encounter", "demo"])
    assert progress._program() == ".venv/bin/bronze-encounter"
    monkeypatch.setattr(progress.shutil, "which", lambda _: "/usr/local/bin/bronze-encounter")
    assert progress._program() == "bronze-encounter"
