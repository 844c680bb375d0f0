"""boto3 clients, built one way: AWS or a local stand-in (moto) depending only on the environment.

boto3 itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, so nothing here names an endpoint.
Retries use botocore's `adaptive` mode: exponential backoff with jitter plus client-side rate limiting when
DynamoDB throttles, instead of a hand-written loop.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=30)


@cache
def client(service: str, region: str = "") -> Any:
    """One cached client per service and region (clients are thread-safe; sessions are not)."""
    session = boto3.session.Session()
    return session.client(service, region_name=region or None, config=RETRIES)
