"""Fidelity on real Spark + Hudi: every file shape lands exactly, and every bad input lands in quarantine.

Expected rows are computed here from the input JSON with plain Python (datetime for the UTC instants), and file
modification times are set with os.utime so `precombine_ts` (meta.lastUpdated, else the file's landing time) is known.
Job runs are few and shared through module-scoped fixtures: each Hudi-writing run costs tens of seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import job_config, read_table

from streaming.config import JobConfig
from streaming.lakehouse.hudi import HudiWriter
from streaming.pipeline import job
from streaming.pipeline.batch import BatchResult
from streaming.pipeline.deps import BatchDeps

pytestmark = pytest.mark.spark

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = int(time.time()) - 6 * 3600  # recent: the file source ignores files much older than the newest it saw
UTF8_BOM = b"\xef\xbb\xbf"
TIME_COLUMNS = ("admission_time", "discharge_time", "last_updated", "precombine_ts", "ingested_at", "source_modified")


# -- helpers -----------------------------------------------------------------------------------------------------
def instant_us(value: str | None) -> int | None:
    """A FHIR dateTime as UTC microseconds since the epoch; a partial date means its first instant (UTC)."""
    if value is None:
        return None
    if len(value) in (4, 7, 10):
        parts = [int(p) for p in value.split("-")] + [1, 1]
        moment = datetime.combine(date(parts[0], parts[1], parts[2]), datetime.min.time(), UTC)
    else:
        moment = datetime.fromisoformat(value)
    return (moment - EPOCH) // timedelta(microseconds=1)


def uri(path: Path) -> str:
    return f"file:{path}"


def bronze(spark: Any, config: JobConfig, *, tombstones: bool = False) -> dict[str, dict[str, Any]]:
    """bronze_encounter by encounter_id, timestamps as UTC epoch microseconds (independent of any time zone).

    Live encounters only, unless `tombstones` (the rows Bundle DELETEs leave, `is_deleted` true).
    """
    from pyspark.sql import functions as F

    df = spark.read.format("hudi").load(config.table_uri(config.tables.encounter))
    df = df.where(F.col("is_deleted") == tombstones)
    df = df.select(*[F.unix_micros(c).alias(c) if c in TIME_COLUMNS else F.col(c) for c in df.columns])
    rows = [r.asDict(recursive=True) for r in df.collect()]
    by_id = {r["encounter_id"]: r for r in rows}
    assert len(by_id) == len(rows), "one row per encounter id"
    return by_id


def quarantine(spark: Any, config: JobConfig) -> list[dict[str, Any]]:
    return read_table(spark, config.table_uri(config.tables.quarantine))


def ingest_log(spark: Any, config: JobConfig) -> list[dict[str, Any]]:
    return read_table(spark, config.table_uri(config.tables.ingest_log))


def expected_row(
    resource: dict[str, Any], sourcename: str, position: str, mtime: int, *, patient_ref: Any = ..., hospital: Any = ...
) -> dict[str, Any]:
    """What bronze_encounter must hold for `resource` read from `sourcename` at `position`."""
    period = resource.get("period") or {}
    return {
        "encounter_id": resource["id"],
        "status": resource.get("status"),
        "patient_ref": resource.get("subject", {}).get("reference") if patient_ref is ... else patient_ref,
        "admission_time": instant_us(period.get("start")),
        "discharge_time": instant_us(period.get("end")),
        "hospital_name": resource.get("serviceProvider", {}).get("display") if hospital is ... else hospital,
        "sourcename": sourcename,
        "source_position": position,
        # No meta.lastUpdated: ordered by landing time, stored as 1970-01-01 + epoch milliseconds in microseconds.
        "precombine_ts": mtime * 1_000,
        "source_modified": mtime * 1_000_000,
        "resource": resource,
    }


def actual_view(row: dict[str, Any], keys: Any) -> dict[str, Any]:
    view = {k: row[k] for k in keys if k != "resource"}
    view["resource"] = json.loads(row["resource_json"])
    return view


def assert_rows(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(actual) == sorted(expected)
    for eid, want in expected.items():
        assert actual_view(actual[eid], want) == want, eid


def write(path: Path, data: bytes, mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def ndjson(*values: Any, eol: str = "\n") -> bytes:
    return "".join((v if isinstance(v, str) else compact(v)) + eol for v in values).encode()


def encounter(eid: str | None, hospital: str | None = "Mixed General", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p-1"},
        "period": {"start": "2022-03-01T08:00:00+00:00", "end": "2022-03-01T09:30:00+00:00"},
    }
    if eid is not None:
        resource["id"] = eid
    if hospital is not None:
        resource["serviceProvider"] = {"reference": "Organization/o-1", "display": hospital}
    resource.update(extra)
    return resource


# -- (a) + (b): the Synthea samples, plain and gzipped --------------------------------------------------------------
@dataclass
class SyntheaRun:
    config: JobConfig
    summary: job.RunSummary
    files: list[Path]


def _land_synthea(samples: Path, landing: Path, *, gz: bool) -> list[Path]:
    """NDJSON at T0, the bundles an hour later, so the bundle copy of an encounter is the newer version."""
    landing.mkdir(parents=True)
    sources = [(samples / "encounters.ndjson", T0)]
    sources += [(p, T0 + 3600) for p in sorted((samples / "bundles").glob("*.json"))]
    files = []
    for src, mtime in sources:
        data = src.read_bytes()
        name = src.name + (".gz" if gz else "")
        files.append(write(landing / name, gzip.compress(data) if gz else data, mtime))
    return files


def _run_synthea(spark: Any, samples: Path, root: Path, *, gz: bool) -> SyntheaRun:
    files = _land_synthea(samples, root / "landing", gz=gz)
    config = job_config(root, root / "landing")
    return SyntheaRun(config, job.run(config, once=True, spark=spark), files)


@pytest.fixture(scope="module")
def synthea_plain(spark: Any, samples: Path, tmp_path_factory: pytest.TempPathFactory) -> SyntheaRun:
    return _run_synthea(spark, samples, tmp_path_factory.mktemp("synthea_plain").resolve(), gz=False)


@pytest.fixture(scope="module")
def synthea_gz(spark: Any, samples: Path, tmp_path_factory: pytest.TempPathFactory) -> SyntheaRun:
    return _run_synthea(spark, samples, tmp_path_factory.mktemp("synthea_gz").resolve(), gz=True)


def synthea_expected(samples: Path, landing: Path, suffix: str = "") -> tuple[dict[str, dict[str, Any]], int]:
    """Expected rows (the newer bundle copy wins where there is one) and the number of skipped bundle entries."""
    expected = {}
    ndjson_uri = uri(landing / f"encounters.ndjson{suffix}")
    for n, line in enumerate((samples / "encounters.ndjson").read_text().splitlines(), start=1):
        resource = json.loads(line)
        expected[resource["id"]] = expected_row(resource, ndjson_uri, f"line {n}", T0)
    skipped = 0
    for path in sorted((samples / "bundles").glob("*.json")):
        entries = json.loads(path.read_text())["entry"]
        # Resolve urn:uuid references the way a FHIR server would: fullUrl -> Type/id of that entry.
        targets = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries}
        for i, entry in enumerate(entries):
            resource = entry["resource"]
            if resource["resourceType"] != "Encounter":
                skipped += 1
                continue
            patient = targets[resource["subject"]["reference"]]
            assert patient.startswith("Patient/")
            expected[resource["id"]] = expected_row(
                resource, uri(landing / f"{path.name}{suffix}"), f"entry {i}", T0 + 3600, patient_ref=patient
            )
    return expected, skipped


def test_synthea_ndjson_and_bundles_land_with_every_value(synthea_plain: SyntheaRun, samples: Path, spark: Any) -> None:
    config = synthea_plain.config
    expected, skipped = synthea_expected(samples, Path(config.source))
    assert len(expected) == 3927

    actual = bronze(spark, config)
    assert_rows(actual, expected)
    assert all(row["hospital_name"] for row in actual.values())
    assert len({row["hospital_name"] for row in actual.values()}) == 118
    from_bundles = [r for r in actual.values() if r["sourcename"].endswith(".json")]
    assert len(from_bundles) == 106
    assert all(r["patient_ref"].startswith("Patient/") for r in from_bundles)
    assert all(r["source_position"].startswith("entry ") for r in from_bundles)

    (log_row,) = ingest_log(spark, config)
    assert log_row["rows_written"] == 3927 + 106  # every Encounter read; the two copies of 106 merge in Hudi
    assert (log_row["rows_rejected"], log_row["rows_skipped"]) == (0, skipped)
    assert sorted(log_row["files"]) == sorted(uri(p) for p in synthea_plain.files)
    assert quarantine_rows_or_empty(spark, config) == []


def quarantine_rows_or_empty(spark: Any, config: JobConfig) -> list[dict[str, Any]]:
    if not Path(config.table_uri(config.tables.quarantine)).exists():
        return []
    return quarantine(spark, config)


def test_synthea_gzipped_gives_the_same_table(
    synthea_plain: SyntheaRun, synthea_gz: SyntheaRun, samples: Path, spark: Any
) -> None:
    plain, gz = bronze(spark, synthea_plain.config), bronze(spark, synthea_gz.config)
    expected, _ = synthea_expected(samples, Path(synthea_gz.config.source), suffix=".gz")
    assert_rows(gz, expected)

    def business(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if not k.startswith("_hoodie_") and k not in ("sourcename", "ingested_at")}

    assert sorted(plain) == sorted(gz)
    for eid in plain:
        assert business(gz[eid]) == business(plain[eid]), eid
        assert gz[eid]["sourcename"].removesuffix(".gz").rsplit("/", 1)[1] == plain[eid]["sourcename"].rsplit("/", 1)[1]
    (log_plain,), (log_gz,) = ingest_log(spark, synthea_plain.config), ingest_log(spark, synthea_gz.config)
    counts = ("rows_in", "rows_written", "rows_deleted", "rows_rejected", "rows_skipped", "delete_requests")
    assert [log_gz[c] for c in counts] == [log_plain[c] for c in counts]


# -- (c) + (d): a mixed prefix and a folder of bad inputs, in one run -------------------------------------------------
MAX_FILE_BYTES = 16 * 1024
MAX_DOCUMENT_BYTES = 8 * 1024
MAX_DEPTH = 20
RAW_SLICE_CHARS = 300


@dataclass
class Expect:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    quarantined: set[tuple[str, str, str]] = field(default_factory=set)  # (sourcename, position, reason)
    skipped: int = 0
    deleted: int = 0
    files: list[str] = field(default_factory=list)
    empty_file: str = ""  # see test_empty_file_is_quarantined

    def put(self, path: Path, data: bytes, mtime: int = T0) -> str:
        self.files.append(uri(write(path, data, mtime)))
        return uri(path)

    def row(self, resource: dict[str, Any], source: str, position: str, mtime: int = T0, **kw: Any) -> None:
        self.rows[resource["id"]] = expected_row(resource, source, position, mtime, **kw)

    def bad(self, source: str, position: str, reason: str) -> None:
        self.quarantined.add((source, position, reason))


def build_mixed(root: Path) -> Expect:
    """Every shape at once: NDJSON, pretty and BOM singles, Bundles of several types, gz of each, other types."""
    exp = Expect()

    # Bulk-export NDJSON: CRLF, a blank line, an offset that is not UTC and a partial date.
    ndj = [
        encounter("mx-nd-1"),
        encounter("mx-nd-2", period={"start": "2022-03-01T08:00:00+05:30", "end": "2022-03-02T01:15:30.25-04:00"}),
        encounter("mx-nd-3", hospital="Hôpital Saint-Éloi", period={"start": "2023-07"}),
        encounter("mx-del", hospital="Deleted Later"),  # the transaction Bundle below deletes it
    ]
    src = exp.put(root / "bulk" / "Encounter.ndjson", ndjson(ndj[0], ndj[1], "", ndj[2], ndj[3], eol="\r\n"))
    for resource, line in zip(ndj[:3], (1, 2, 4), strict=True):
        exp.row(resource, src, f"line {line}")
    exp.put(root / "bulk" / "Patient.ndjson", ndjson(*({"resourceType": "Patient", "id": f"p-{i}"} for i in range(3))))
    exp.skipped += 3

    pretty = encounter("mx-pretty", hospital="Pretty Hospital")
    exp.row(pretty, exp.put(root / "single" / "pretty.json", json.dumps(pretty, indent=2).encode()), "file")
    bom = encounter("mx-bom", hospital="Bom Clinic")
    exp.row(bom, exp.put(root / "single" / "bom.json", UTF8_BOM + json.dumps(bom, indent=4).encode()), "file")
    odd_name = encounter("mx-odd-name")
    exp.row(odd_name, exp.put(root / "single" / "odd name %41 #1.json", compact(odd_name).encode()), "line 1")

    def transaction(prefix: str, kind: str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], int, str, str]]]:
        pid, oid = f"{prefix}-patient", f"{prefix}-org"
        enc_a = encounter(
            f"{prefix}-a",
            hospital=None,  # no display: the Organization's name in the Bundle is used
            subject={"reference": f"urn:uuid:{pid}"},
            serviceProvider={"reference": f"urn:uuid:{oid}"},
            participant=[{"individual": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1"}}],
        )
        enc_b = encounter(f"{prefix}-b", hospital="Display Wins", subject={"reference": f"urn:uuid:{pid}"})
        entries = [
            {"fullUrl": f"urn:uuid:{pid}", "resource": {"resourceType": "Patient", "id": pid}},
            {
                "fullUrl": f"urn:uuid:{oid}",
                "resource": {"resourceType": "Organization", "id": oid, "name": f"{prefix} Org"},
            },
            {"fullUrl": f"urn:uuid:{prefix}-a", "resource": enc_a},
            {"fullUrl": "urn:uuid:obs", "resource": {"resourceType": "Observation", "id": f"{prefix}-obs"}},
            {"fullUrl": f"urn:uuid:{prefix}-b", "resource": enc_b},
        ]
        if kind in ("transaction", "batch"):
            entries = [{**e, "request": {"method": "POST", "url": e["resource"]["resourceType"]}} for e in entries]
        bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
        rows = [(enc_a, 2, f"Patient/{pid}", f"{prefix} Org"), (enc_b, 4, f"Patient/{pid}", "Display Wins")]
        return bundle, rows

    for name, kind, gz, pretty_bundle in [
        ("collection.json", "collection", False, True),
        ("searchset.json", "searchset", False, False),
        ("batch.json.gz", "batch", True, True),
    ]:
        prefix = f"mx-{kind}"
        bundle, rows = transaction(prefix, kind)
        text = (json.dumps(bundle, indent=2, ensure_ascii=False) if pretty_bundle else compact(bundle)).encode()
        src = exp.put(root / "bundles" / name, gzip.compress(text) if gz else text)
        where = "" if pretty_bundle else "line 1 "
        for resource, index, patient, hospital in rows:
            exp.row(resource, src, f"{where}entry {index}", patient_ref=patient, hospital=hospital)
        exp.skipped += 3

    # A transaction Bundle, newer than the NDJSON, that deletes one encounter and adds another.
    added = encounter("mx-tx-added", hospital="Tx Hospital")
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "Encounter/mx-del"}},
            {"resource": added, "request": {"method": "PUT", "url": "Encounter/mx-tx-added"}},
        ],
    }
    src = exp.put(root / "bundles" / "tx.json", json.dumps(tx, indent=1).encode(), T0 + 60)
    exp.row(added, src, "entry 1", T0 + 60)
    exp.deleted += 1

    # gzip of the other shapes.
    gz_nd = [encounter("mx-gz-nd-1"), encounter("mx-gz-nd-2", hospital="Gz Hospital")]
    src = exp.put(root / "gz" / "Encounter.ndjson.gz", gzip.compress(ndjson(*gz_nd)))
    for n, resource in enumerate(gz_nd, start=1):
        exp.row(resource, src, f"line {n}")
    gz_pretty = encounter("mx-gz-pretty")
    src = exp.put(root / "gz" / "pretty.json.gz", gzip.compress(json.dumps(gz_pretty, indent=2).encode()))
    exp.row(gz_pretty, src, "file")
    gz_bom = encounter("mx-gz-bom", hospital="Bom Gz")
    src = exp.put(root / "gz" / "bom.json.gz", gzip.compress(UTF8_BOM + compact(gz_bom).encode() + b"\n"))
    exp.row(gz_bom, src, "line 1")
    exp.put(root / "gz" / "Patient.ndjson.gz", gzip.compress(ndjson({"resourceType": "Patient", "id": "gz-p"})))
    exp.skipped += 1
    return exp


def build_bad(root: Path) -> Expect:
    """One file per bad-input class, with good neighbours wherever the class allows them."""
    exp = Expect()
    good = iter(range(1000))

    def neighbour() -> dict[str, Any]:
        return encounter(f"bad-good-{next(good)}")

    pretty = json.dumps(encounter("bad-x"), indent=2)
    exp.bad(exp.put(root / "malformed.json", pretty.replace('"status"', "status").encode()), "file", "malformed_json")
    exp.bad(exp.put(root / "truncated.json", pretty[: len(pretty) // 2].encode()), "file", "truncated")
    exp.empty_file = exp.put(root / "empty.json", b"")  # zero bytes: Spark's scan skips it, the source log has it
    exp.bad(exp.empty_file, "file", "empty_file")
    not_fhir = json.dumps({"hello": "world"}, indent=2).encode()
    exp.bad(exp.put(root / "not_fhir.json", not_fhir), "file", "not_a_fhir_resource")
    exp.bad(exp.put(root / "no_id.json", json.dumps(encounter(None), indent=2).encode()), "file", "missing_id")
    # A gzip cut in half: the lines that decompress whole still land, then the file is quarantined as truncated.
    # Hex digests keep it from compressing to almost nothing, so half the stream holds several whole lines.
    gz_lines = [encounter(f"bad-gz-{i}", text={"div": hashlib.sha512(b"%d" % i).hexdigest()}) for i in range(30)]
    gz_whole = gzip.compress(ndjson(*gz_lines))
    gz_cut = gz_whole[: len(gz_whole) // 2]
    src = exp.put(root / "truncated.ndjson.gz", gz_cut)
    readable = zlib.decompressobj(31).decompress(gz_cut)
    assert 0 < readable.count(b"\n") < len(gz_lines)
    for n in range(readable.count(b"\n")):
        exp.row(gz_lines[n], src, f"line {n + 1}")
    exp.bad(src, "file", "truncated")
    exp.bad(exp.put(root / "too_large.ndjson", ndjson(*(neighbour() for _ in range(60)))), "file", "file_too_large")

    def ndjson_with_bad_line(name: str, bad_line: bytes, reason: str) -> None:
        first, last = neighbour(), neighbour()
        src = exp.put(root / name, ndjson(first) + bad_line + b"\n" + ndjson(last))
        exp.row(first, src, "line 1")
        exp.bad(src, "line 2", reason)
        exp.row(last, src, "line 3")

    ndjson_with_bad_line("bad_line.ndjson", b'{"resourceType": "Encounter", "id": "bad-line",', "truncated")
    ndjson_with_bad_line("bad_syntax.ndjson", b'{"resourceType": "Encounter" "id": "bad-syntax"}', "malformed_json")
    ndjson_with_bad_line("bad_id.ndjson", compact(encounter("not a FHIR id!")).encode(), "invalid_id")
    ndjson_with_bad_line("long_id.ndjson", compact(encounter("x" * 65)).encode(), "invalid_id")
    bad_time = encounter("bad-time", period={"start": "2022-02-30T08:00:00Z"})
    ndjson_with_bad_line("bad_datetime.ndjson", compact(bad_time).encode(), "bad_datetime")
    no_zone = encounter("no-zone", period={"start": "2022-03-01T08:00:00"})  # FHIR requires a zone with a time
    ndjson_with_bad_line("no_zone.ndjson", compact(no_zone).encode(), "bad_datetime")
    ndjson_with_bad_line("invalid_utf8.ndjson", b'{"resourceType": "Encounter", "id": "utf\xff\xfe8"}', "invalid_utf8")
    deep: dict[str, Any] = {"v": 1}
    for _ in range(MAX_DEPTH + 5):
        deep = {"x": deep}
    ndjson_with_bad_line("too_deep.ndjson", compact(encounter("deep", extension=[deep])).encode(), "nesting_too_deep")
    big = compact(encounter("big", text={"div": "y" * MAX_DOCUMENT_BYTES})).encode()
    ndjson_with_bad_line("record_too_large.ndjson", big, "record_too_large")
    ndjson_with_bad_line("not_fhir.ndjson", b'{"id": "no-type"}', "not_a_fhir_resource")

    # A bad entry inside an otherwise good Bundle (pretty, so positions are `entry N`).
    first, last = neighbour(), neighbour()
    entries = [
        {"fullUrl": "urn:uuid:g1", "resource": first},
        {"fullUrl": "urn:uuid:broken"},
        {"resource": {"resourceType": "Patient", "id": "p"}},
        {"fullUrl": "urn:uuid:g2", "resource": last},
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    src = exp.put(root / "bad_entry.json", json.dumps(bundle, indent=2).encode())
    exp.row(first, src, "entry 0")
    exp.bad(src, "entry 1", "bad_bundle_entry")
    exp.skipped += 1
    exp.row(last, src, "entry 3")
    return exp


@dataclass
class MixedRun:
    config: JobConfig
    summary: job.RunSummary
    mixed: Expect
    bad: Expect


@pytest.fixture(scope="module")
def mixed_run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> MixedRun:
    root = tmp_path_factory.mktemp("mixed").resolve()
    landing = root / "landing"
    mixed, bad = build_mixed(landing / "mixed"), build_bad(landing / "bad")
    config = job_config(
        root,
        landing,
        **{
            "fhir.max_file_bytes": MAX_FILE_BYTES,
            "fhir.max_document_bytes": MAX_DOCUMENT_BYTES,
            "fhir.max_depth": MAX_DEPTH,
            "fhir.raw_slice_chars": RAW_SLICE_CHARS,
        },
    )
    return MixedRun(config, job.run(config, once=True, spark=spark), mixed, bad)


def test_mixed_prefix_yields_exactly_the_expected_rows(mixed_run: MixedRun, spark: Any) -> None:
    actual = bronze(spark, mixed_run.config)
    mine = {eid: row for eid, row in actual.items() if eid.startswith("mx-")}
    assert_rows(mine, mixed_run.mixed.rows)
    assert "mx-del" not in actual  # deleted by the newer transaction Bundle: a tombstone, nothing else
    assert set(bronze(spark, mixed_run.config, tombstones=True)) == {"mx-del"}
    quarantined = {r["sourcename"] for r in quarantine(spark, mixed_run.config)}
    assert not quarantined & set(mixed_run.mixed.files)  # nothing of the good shapes was rejected


def test_each_bad_input_is_quarantined_and_its_good_neighbours_land(mixed_run: MixedRun, spark: Any) -> None:
    config, mixed, bad = mixed_run.config, mixed_run.mixed, mixed_run.bad
    actual = bronze(spark, config)
    assert_rows({eid: row for eid, row in actual.items() if not eid.startswith("mx-")}, bad.rows)

    rows = quarantine(spark, config)
    assert {(r["sourcename"], r["source_position"], r["reason"]) for r in rows} == bad.quarantined
    assert len(rows) == len(bad.quarantined)
    (log_row,) = ingest_log(spark, config)
    assert log_row["rows_rejected"] == len(rows)
    assert log_row["rows_written"] == len(mixed.rows) + 1 + len(bad.rows)  # +1: mx-del, written then deleted
    assert log_row["delete_requests"] == mixed.deleted
    assert log_row["rows_deleted"] == 0  # mx-del came and went within this batch: no stored row left the table
    assert log_row["rows_skipped"] == mixed.skipped + bad.skipped
    assert sorted(log_row["files"]) == sorted(mixed.files + bad.files)
    for row in rows:
        assert row["message"]
        assert row["raw_slice"] is None or 0 < len(row["raw_slice"]) <= RAW_SLICE_CHARS
        assert (row["batch_key"], row["batch_id"]) == (log_row["batch_key"], log_row["batch_id"])
        assert row["quarantined_at"] is not None
    by_position = {(r["sourcename"].rsplit("/", 1)[1], r["source_position"]): r["raw_slice"] for r in rows}
    # A record-level reject keeps the start of the record's own JSON text, a file-level one the file's.
    assert by_position[("bad_id.ndjson", "line 2")] == compact(encounter("not a FHIR id!"))[:RAW_SLICE_CHARS]
    assert by_position[("not_fhir.ndjson", "line 2")] == '{"id": "no-type"}'


def test_empty_file_is_quarantined(mixed_run: MixedRun, spark: Any) -> None:
    empty = mixed_run.bad.empty_file
    (log_row,) = ingest_log(spark, mixed_run.config)
    assert empty in log_row["files"]
    rows = quarantine(spark, mixed_run.config)
    assert [(r["source_position"], r["reason"]) for r in rows if r["sourcename"] == empty] == [("file", "empty_file")]


# -- (e): the continuous stream keeps running through bad input ----------------------------------------------------
def _wait_for(results: list[BatchResult], query: Any, file_uri: str, timeout: float = 180.0) -> BatchResult:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query.exception() is not None:
            raise AssertionError(f"stream failed: {query.exception()}")
        for result in list(results):
            if file_uri in result.files:
                return result
        time.sleep(0.5)
    raise AssertionError(f"no batch processed {file_uri} within {timeout}s")


def _drop(landing: Path, staging: Path, name: str, data: bytes) -> str:
    """Land a file atomically, as a feed should: write beside the prefix, then rename into it."""
    staged = write(staging / name, data, int(time.time()))
    target = landing / name
    os.replace(staged, target)
    return uri(target)


@pytest.fixture
def stream(spark: Any, tmp_path: Path) -> Iterator[tuple[Any, list[BatchResult], JobConfig, Path]]:
    tmp_path = tmp_path.resolve()
    landing = tmp_path / "landing"
    landing.mkdir()
    # Every batch writes its own ingest-log row: the test reads the log while the stream runs.
    settings = {"trigger_interval": "1 second", "fhir.max_depth": MAX_DEPTH, "ingest_log.every_batches": 1}
    config = job_config(tmp_path, landing, **settings)
    ledger = job.open_ledger(config)
    deps = BatchDeps(spark=spark, config=config, ledger=ledger, writer=HudiWriter(spark), run_id=job.new_run_id())
    results: list[BatchResult] = []
    query = job.start_stream(spark, config, deps, once=False, on_batch=results)
    try:
        yield query, results, config, landing
    finally:
        query.stop()
        ledger.close()
        shutil.rmtree(tmp_path / "staging", ignore_errors=True)


def test_stream_keeps_running_through_bad_input(stream: Any, spark: Any, tmp_path: Path) -> None:
    query, results, config, landing = stream
    staging = tmp_path.resolve() / "staging"

    bad_uri = _drop(landing, staging, "broken.json", b'{"resourceType": "Encounter", "id": "half')
    bad_batch = _wait_for(results, query, bad_uri)
    assert bad_batch.stats.rows_rejected == 1 and bad_batch.stats.rows_written == 0

    good = [encounter("live-1"), encounter("live-2", hospital="Live Hospital")]
    good_uri = _drop(landing, staging, "good.ndjson", ndjson(*good))
    good_batch = _wait_for(results, query, good_uri)
    assert (good_batch.stats.rows_written, good_batch.stats.rows_rejected) == (2, 0)
    assert query.isActive and query.exception() is None

    actual = bronze(spark, config)
    assert sorted(actual) == ["live-1", "live-2"]
    assert [actual[e["id"]]["hospital_name"] for e in good] == ["Mixed General", "Live Hospital"]
    assert [(r["sourcename"], r["source_position"], r["reason"]) for r in quarantine(spark, config)] == [
        (bad_uri, "file", "truncated"),
    ]
    logs = sorted(ingest_log(spark, config), key=lambda r: r["batch_id"])
    assert [(r["files"], r["rows_written"], r["rows_rejected"]) for r in logs] == [
        ([bad_uri], 0, 1),
        ([good_uri], 2, 0),
    ]
