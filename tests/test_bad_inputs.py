"""Every bad input ends a command with one line on stderr and its documented exit code, never a traceback.

Each case is what a user, an analyst or an operator mistypes; before, several answered "0 rows" or "waiting files:
0" with exit 0, created the misspelled folder, or printed a Python traceback with exit 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streaming import cli
from streaming.cli import exits

ROOT = Path(__file__).resolve().parent.parent


def _warehouse_with_a_table(tmp: Path) -> Path:
    """A warehouse holding one (empty) table folder: enough for `query` to accept it."""
    marker = tmp / "wh" / "bronze_encounter" / ".hoodie" / "hoodie.properties"
    marker.parent.mkdir(parents=True)
    marker.write_text("hoodie.table.name=bronze_encounter\n")
    return tmp / "wh"


def _file(tmp: Path, name: str = "a-file", text: str = "x") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _folder(tmp: Path, name: str = "folder") -> Path:
    (tmp / name).mkdir(exist_ok=True)
    return tmp / name


def _non_empty(tmp: Path) -> Path:
    _file(_folder(tmp, "mine"), "notes.txt")
    return tmp / "mine"


# (argv built from a scratch folder, exit code, what the one line must say)
CASES: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "query, a warehouse that does not exist": (
        lambda t: ["query", "--warehouse", "/no/such/dir", "SELECT count(*) FROM bronze_encounter"],
        exits.CONFIG,
        "warehouse /no/such/dir holds none of the tables",
    ),
    "query, no --warehouse (the default, relative to here)": (
        lambda t: ["query", "SELECT count(*) FROM bronze_encounter"],
        exits.CONFIG,
        "holds none of the tables",
    ),
    "query, a warehouse that is a file": (
        lambda t: ["query", "--warehouse", str(_file(t)), "SELECT count(*) FROM bronze_encounter"],
        exits.CONFIG,
        "is a file, not a folder",
    ),
    "status, a source that does not exist": (
        lambda t: ["status", "--source", "/does/not/exist", "--warehouse", str(_warehouse_with_a_table(t))],
        exits.CONFIG,
        "source /does/not/exist does not exist",
    ),
    "status, a warehouse without tables": (
        lambda t: ["status", "--source", str(_folder(t)), "--warehouse", str(_folder(t, "empty"))],
        exits.CONFIG,
        "holds none of the tables",
    ),
    "status --env with no such settings file": (
        lambda t: ["status", "--env", "prod"],
        exits.CONFIG,
        "--env prod: there is no",
    ),
    "run, a mistyped source": (
        lambda t: ["run", "--once", "--source", str(t / "landign"), "--warehouse", str(t / "wh")],
        exits.CONFIG,
        "landign does not exist",
    ),
    "--config that does not exist": (
        lambda t: ["status", "--config", str(t / "nope.toml")],
        exits.CONFIG,
        "nope.toml does not exist",
    ),
    "--config that is not TOML": (
        lambda t: ["status", "--config", str(_file(t, "broken.toml", "source = [unclosed"))],
        exits.CONFIG,
        "is not valid TOML",
    ),
    "--config that is a folder": (
        lambda t: ["status", "--config", str(_folder(t))],
        exits.CONFIG,
        "is a folder, not a TOML file",
    ),
    "run, a warehouse that is a file": (
        lambda t: ["run", "--once", "--source", str(_folder(t)), "--warehouse", str(_file(t))],
        exits.CONFIG,
        "is a file, not a folder",
    ),
    "status, a source on a file system the job cannot list": (
        lambda t: ["status", "--source", "hdfs://x/landing", "--warehouse", str(_warehouse_with_a_table(t))],
        exits.CONFIG,
        "is not a local folder or an s3:// prefix",
    ),
    "status --last -1": (lambda t: ["status", "--last", "-1"], exits.CONFIG, "at least 1, got '-1'"),
    "generate --files 0": (
        lambda t: ["generate", "--out", str(t / "out"), "--files", "0", "--per-file", "1"],
        exits.CONFIG,
        "at least 1, got '0'",
    ),
    "--set a boolean that is neither": (
        lambda t: ["run", "--once", "--source", str(_folder(t)), "--set", "spark.ui=maybe"],
        exits.CONFIG,
        "spark.ui must be true or false, got 'maybe'",
    ),
    "--set a negative count": (
        lambda t: ["run", "--once", "--source", str(_folder(t)), "--set", "max_files_per_trigger=-5"],
        exits.CONFIG,
        "max_files_per_trigger must be at least 1, got -5",
    ),
    "--set a key that does not exist": (
        lambda t: ["status", "--set", "fhir.max_dept=3"],
        exits.CONFIG,
        "unknown setting fhir.max_dept",
    ),
    "demo --workdir on a folder it did not make": (
        lambda t: ["demo", "--workdir", str(_non_empty(t))],
        exits.CONFIG,
        "holds files the demo did not make",
    ),
    "an unknown command": (lambda t: ["ingest"], exits.CONFIG, "invalid choice: 'ingest'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_ends_with_one_line_and_its_code(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, code, says = CASES[case]
    monkeypatch.chdir(tmp_path)
    assert _exit_code(argv(tmp_path)) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert says in err, err
    assert not (tmp_path / "landign").exists()  # a mistyped source is not created


def _exit_code(args: list[str]) -> int | str | None:
    """What the process would exit with: main's return, or the code argparse exits with."""
    try:
        return cli.main(args)
    except SystemExit as ended:
        return ended.code


def test_no_credentials_is_one_line_and_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`status --env glue` with no AWS credentials anywhere: the S3 listing fails as a setting, not a crash."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    empty = _file(tmp_path, "aws-config", "")
    env |= {"AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty), "AWS_REGION": "us-east-1"}
    done = subprocess.run(
        [sys.executable, "-m", "streaming.cli", "status", "--env", "glue"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == exits.CONFIG, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "credentials" in done.stderr  # the ledger or the listing, whichever asks AWS first


def test_a_reader_that_leaves_early_ends_nothing_in_a_traceback(tmp_path: Path) -> None:
    """`query ... | head -1`: the closed pipe stops the command quietly with exit 0, as other tools do."""
    warehouse = _warehouse_with_a_table(tmp_path)
    argv = [sys.executable, "-m", "streaming.cli", "query", "--warehouse", str(warehouse), "--format", "csv"]
    with subprocess.Popen(
        [*argv, "SELECT range AS n FROM range(2000000)"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "n"
        proc.stdout.close()  # the reader leaves
        err = proc.stderr.read()
        code = proc.wait(120)
    assert (code, err) == (0, "")


def test_the_exit_codes_are_numbered_in_order_and_the_cli_names_them() -> None:
    assert [e.code for e in exits.EXIT_CODES] == list(range(len(exits.EXIT_CODES)))
    assert (cli.EXIT_CONFIG, cli.EXIT_LEASE, cli.EXIT_LEDGER, cli.EXIT_FILE) == (2, 3, 4, 5)
