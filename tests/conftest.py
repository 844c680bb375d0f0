"""Shared fixtures: one local Spark session per test run, AWS stand-ins from aws_fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streaming.config import SparkConfig

pytest_plugins = ["aws_fixtures"]

# The shared Synthea samples sit beside the repo (../shared); BRONZE_FHIR_SAMPLES points elsewhere.
_CANDIDATES = [
    os.environ.get("BRONZE_FHIR_SAMPLES", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "fhir-samples" / "synthea"),
    "/work/shared/fhir-samples/synthea",
]


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared Synthea R4 samples (read in place, never copied into the repo)."""
    for candidate in filter(None, _CANDIDATES):
        if (Path(candidate) / "encounters.ndjson").exists():
            return Path(candidate)
    pytest.fail(f"shared FHIR samples not found in {[c for c in _CANDIDATES if c]}; set BRONZE_FHIR_SAMPLES")


@pytest.fixture(scope="session")
def spark(local_aws: str) -> Iterator[object]:
    """A session-scoped local[2] Spark with Hudi: starting the JVM once keeps the suite minutes, not hours.

    It starts after `local_aws`, so s3a and the executors' boto3 reach the moto server.
    """
    from streaming.session import build_spark

    session = build_spark(SparkConfig(master="local[2]", shuffle_partitions=2, log_level="ERROR"))
    yield session
    session.stop()
