"""File access (storage.py): file: URIs cut without unquoting, S3 objects streamed, missing and archived objects."""

from __future__ import annotations

import gzip

import pytest
from parse_cases import GOOD_A, GOOD_B, LIMITS, ndjson, outline, run_files

from streaming.adapters import storage
from streaming.fhir import reasons
from streaming.fhir.parse import FileSplitter


def test_local_path_cuts_file_uris_without_unquoting() -> None:
    assert storage.local_path("file:/data/a%41 b.json") == "/data/a%41 b.json"
    assert storage.local_path("file:///data/x.json") == "/data/x.json"
    assert storage.local_path("/data/x.json") == "/data/x.json"
    assert storage.split_s3_uri("s3a://bucket/landing/a?b#c.json") == ("bucket", "landing/a?b#c.json")


def test_s3_object_streams_and_a_missing_one_is_file_not_found(s3_bucket: str) -> None:
    from streaming.adapters import aws

    data = gzip.compress(ndjson(GOOD_A, GOOD_B))
    aws.client("s3").put_object(Bucket=s3_bucket, Key="landing/x y.ndjson.gz", Body=data)
    with storage.open_uri(f"s3a://{s3_bucket}/landing/x y.ndjson.gz") as raw:
        assert outline(list(FileSplitter(LIMITS).split(raw, len(data)))) == [
            ("resource", "line 1", "good-a"),
            ("resource", "line 2", "good-b"),
        ]
    with pytest.raises(FileNotFoundError):
        storage.open_uri(f"s3a://{s3_bucket}/landing/missing.json")
    rows = run_files([f"s3a://{s3_bucket}/landing/missing.json"])
    assert [(r["kind"], r["reason"], r["message"]) for r in rows] == [
        ("quarantine", reasons.UNREADABLE, "cannot read: FileNotFoundError")
    ]


def test_an_s3_object_in_glacier_fails_the_batch_and_reads_once_restored(s3_bucket: str) -> None:
    from streaming.adapters import aws

    s3 = aws.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="landing/cold.ndjson", Body=ndjson(GOOD_A), StorageClass="GLACIER")
    uri = f"s3a://{s3_bucket}/landing/cold.ndjson"
    with pytest.raises(storage.FileReadError, match=r"\(PermissionError: InvalidObjectState\)"):
        run_files([uri])
    s3.restore_object(Bucket=s3_bucket, Key="landing/cold.ndjson", RestoreRequest={"Days": 1})
    assert [(r["kind"], r["resource_id"]) for r in run_files([uri])] == [("resource", "good-a")]
