"""Each documented exit code (streaming/cli/exits.py, docs/reference.md's table) is what the CLI returns in its case.

One scenario per code, driven from the same table docs/reference.md is generated from: a code the table documents
and no scenario covers fails the test, so does a scenario that ends with another code.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import create_ledger_table
from helpers import job_config

from streaming import cli
from streaming.adapters.storage import FileReadError
from streaming.cli import exits
from streaming.config import canonical_table_uri
from streaming.ledger import SqliteLedger
from streaming.pipeline import job


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on exit: nothing listens there


def _done(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["generate", "--out", str(tmp / "out"), "--files", "1", "--per-file", "1"]


def _unexpected(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug, not an input")

    monkeypatch.setattr("streaming.generate.generate", broken)
    return _done(tmp, monkeypatch)


def _bad_input(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["status", "--set", "fhir.max_dept=3"]


def _lease_held(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (tmp / "landing").mkdir()
    config = job_config(tmp, tmp / "landing")
    ledger = SqliteLedger(config.ledger_path)
    ledger.acquire_lease(f"writer:{canonical_table_uri(config)}", "another-run", timedelta(minutes=5))
    ledger.close()
    return [
        "run",
        "--once",
        "--source",
        config.source,
        "--warehouse",
        config.warehouse,
        "--set",
        "lease_wait_seconds=0",
    ]


def _ledger_unreachable(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    (tmp / "landing").mkdir()
    argv = ["run", "--once", "--source", str(tmp / "landing"), "--warehouse", str(tmp / "wh")]
    return [*argv, "--ledger-backend", "dynamodb", "--ledger-table", "ledger-t"]


def _file_unreadable(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real scenario (a Glacier object) is tests/test_access_errors.py's; here what the CLI makes of it."""

    def blocked(*_: Any, **__: Any) -> Any:
        raise FileReadError.of("s3a://landing/in-glacier.ndjson", "PermissionError: InvalidObjectState")

    monkeypatch.setattr(job, "run", blocked)
    (tmp / "landing").mkdir()
    return ["run", "--once", "--source", str(tmp / "landing"), "--warehouse", str(tmp / "wh")]


SCENARIOS: dict[int, Callable[[Path, pytest.MonkeyPatch], list[str]]] = {
    exits.DONE: _done,
    exits.FAILED: _unexpected,
    exits.CONFIG: _bad_input,
    exits.LEASE: _lease_held,
    exits.LEDGER: _ledger_unreachable,
    exits.FILE: _file_unreadable,
}
# `status --check` codes: tests/test_status.py drives those through real states.
STATUS_CHECK = {exits.BEHIND, exits.STALLED}


def test_every_documented_code_has_a_scenario() -> None:
    assert set(SCENARIOS) | STATUS_CHECK == {e.code for e in exits.EXIT_CODES}


@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_the_cli_returns_the_documented_code(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = SCENARIOS[code](tmp_path, monkeypatch)
    began = time.monotonic()
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == (0 if code == exits.DONE else 1), err
    if code == exits.LEDGER:
        assert time.monotonic() - began < 30  # a closed port is refused at once, not waited on for minutes


@pytest.mark.spark
def test_a_once_batch_whose_ledger_goes_away_mid_batch_exits_4_and_commits_nothing(
    spark: Any, aws_env: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import TcpProxy

    from streaming.generate import generate

    create_ledger_table(unique_name)
    proxy = TcpProxy.to(aws_env).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    landing = tmp_path / "landing"
    generated = generate(landing, files=2, per_file=3, seed=61)
    real_run = job.run

    def run_with_outage(*args: Any, **kwargs: Any) -> Any:
        # The ledger leaves after the bronze commit: the batch's ingest-log row and ledger commit cannot happen.
        return real_run(*args, hook=lambda step: proxy.pause() if step == "after_bronze" else None, **kwargs)

    monkeypatch.setattr(job, "run", run_with_outage)
    monkeypatch.setattr("streaming.lakehouse.session.build_spark", lambda *_a, **_k: spark)
    argv = ["run", "--once", "--source", str(landing), "--warehouse", str(tmp_path / "wh")]
    argv += ["--ledger-backend", "dynamodb", "--ledger-table", unique_name, "--set", "lease_ttl_seconds=30"]
    try:
        assert cli.main(argv) == exits.LEDGER
    finally:
        proxy.resume()
        proxy.close()
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB")  # read the ledger from moto itself

    from streaming.ledger import open_ledger

    settings = {"warehouse": str(tmp_path / "wh"), "ledger.backend": "dynamodb", "ledger.table": unique_name}
    ledger = open_ledger(job_config(tmp_path, landing, **settings))
    uris = sorted(f"file:{p}" for p in generated.files)
    try:
        assert ledger.committed(uris) == set()  # nothing past the outage was committed
        assert [sorted(i.files) for i in ledger.open_intents()] == [uris]  # the next run finishes it
    finally:
        ledger.close()
