"""The executor side of reading (records.py): files to Arrow rows, a vanished file, a poison file, transient and
access errors; and the reason codes reading and flattening emit, checked against the table in reasons.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from parse_cases import BYTE_FAULTS, FHIR_FAULTS, GOOD_A, LIMITS, ndjson, run_files

from streaming.adapters import storage
from streaming.bronze import records
from streaming.config import FhirConfig
from streaming.fhir import reasons
from streaming.fhir.parse import FileSplitter, Record


def test_vanished_file_is_quarantined_as_unreadable(tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson(GOOD_A))
    rows = run_files([f"file:{tmp_path / 'gone.json'}", f"file:{good}"])
    assert [(r["sourcename"], r["kind"], r["position"], r["reason"]) for r in rows] == [
        (f"file:{tmp_path / 'gone.json'}", "quarantine", "file", reasons.UNREADABLE),
        (f"file:{good}", "resource", "line 1", None),
    ]
    assert rows[1]["file_modified"] == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _raising_splitter(error: Exception) -> Callable[..., Iterator[Record]]:
    def split_then_fail(self: FileSplitter, raw: Any, size: int | None = None) -> Iterator[Record]:
        yield Record("skipped", "line 1", resource_type="Patient")
        raise error

    return split_then_fail


def test_unexpected_splitter_error_quarantines_the_file_not_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(ndjson(GOOD_A))
    monkeypatch.setattr(FileSplitter, "split", _raising_splitter(KeyError("boom")))
    rows = run_files([f"file:{path}"])
    assert [(r["kind"], r["position"], r["reason"]) for r in rows] == [
        ("skipped", "line 1", None),
        ("quarantine", "file", reasons.UNREADABLE),
    ]
    assert rows[1]["message"] == "cannot split: KeyError"


def test_a_document_the_worker_cannot_hold_is_quarantined_not_retried_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.ndjson"
    path.write_bytes(ndjson(GOOD_A))
    monkeypatch.setattr(FileSplitter, "split", _raising_splitter(MemoryError()))
    rows = run_files([f"file:{path}"])
    assert [(r["kind"], r["position"], r["reason"]) for r in rows] == [
        ("skipped", "line 1", None),  # what was read before it stays
        ("quarantine", "file", reasons.RECORD_TOO_LARGE),
    ]
    assert rows[1]["message"] == records.OUT_OF_MEMORY


def test_transient_s3_errors_fail_the_task_for_a_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ReadTimeoutError

    path = tmp_path / "x.ndjson"
    path.write_bytes(ndjson(GOOD_A))
    monkeypatch.setattr(FileSplitter, "split", _raising_splitter(ReadTimeoutError(endpoint_url="http://s3")))
    with pytest.raises(ReadTimeoutError):
        run_files([f"file:{path}"])


def test_a_file_that_exists_but_cannot_be_read_fails_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.ndjson"
    path.write_bytes(ndjson(GOOD_A))

    def denied(uri: str) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records, "open_uri", denied)
    with pytest.raises(storage.FileReadError) as failed:
        run_files([f"file:{path}"])
    assert failed.value.uri == f"file:{path}"
    assert str(failed.value).startswith(f"cannot read file:{path} (PermissionError); nothing of it is committed")


# -- reason codes: what each stage emits is its part of the table --------------------------------------------------
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fhir"


def _codes(stage: str) -> set[str]:
    return {reason.code for reason in reasons.REASONS if reason.raised_in == stage}


def _write_fault_files(tmp_path: Path) -> dict[Path, FhirConfig]:
    """Every fault file of parse_cases.py (BYTE_FAULTS, FHIR_FAULTS) on disk, with the limits its case uses."""
    files = {}
    for name, (data, overrides, _) in {**BYTE_FAULTS, **FHIR_FAULTS}.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        files[path] = FhirConfig(**{**LIMITS.__dict__, **overrides})
    return files


def test_reading_emits_exactly_the_read_codes(tmp_path: Path) -> None:
    """Each `read` code is reachable from a fault file (or a vanished one), and reading emits no other code."""
    seen = {
        row["reason"]
        for path, limits in _write_fault_files(tmp_path).items()
        for row in run_files([f"file:{path}"], limits, length=path.stat().st_size)
        if row["kind"] == "quarantine"
    }
    seen |= {row["reason"] for row in run_files([f"file:{tmp_path / 'gone.json'}"])}
    assert seen == _codes("read")


@pytest.mark.spark
def test_flattened_fixtures_carry_table_codes_from_their_own_stage(spark: Any, tmp_path: Path) -> None:
    """The hand-written R4/R5 fixtures and the fault files, read and flattened as a batch does: file-level rejects
    keep a `read` code, the Encounters flatten rejects carry exactly the `flatten` codes."""
    from streaming.bronze.flatten import flatten

    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    future = tmp_path / "future.json"  # the fixtures are dated in the past; one event time ahead of the clock
    ahead = {"resourceType": "Encounter", "id": "ahead", "meta": {"lastUpdated": "2999-01-01T00:00:00Z"}}
    future.write_text(json.dumps(ahead))
    paths = [*sorted(FIXTURES.glob("r*/*")), *_write_fault_files(tmp_path), future]
    landed = [records.LandedFile(f"file:{p}", p.stat().st_size, now) for p in paths]
    rows = flatten(records.read_records(spark, landed, LIMITS), ingested_at=now)
    # Filtered here, not in Spark: flatten's docstring says why.
    rejects = [r for r in rows.select("kind", "reject_reason").distinct().collect() if r["reject_reason"]]
    read = {r["reject_reason"] for r in rejects if r["kind"] == "quarantine"}
    flattened = {r["reject_reason"] for r in rejects if r["kind"] != "quarantine"}
    assert read and read <= _codes("read")
    assert flattened == _codes("flatten")
