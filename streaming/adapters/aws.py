"""boto3 clients, built one way: AWS or a local stand-in (moto) depending only on the environment.

boto3 itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, so nothing here names an endpoint.
Retries use botocore's `adaptive` mode: exponential backoff with jitter plus client-side rate limiting when
DynamoDB throttles, instead of a hand-written loop.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=30)


def client(service: str, region: str = "", config: Config | None = None) -> Any:
    """A client for `service`, shared while the endpoint/credential environment stays the same."""
    env_key = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"
    endpoint = os.environ.get(env_key) or os.environ.get("AWS_ENDPOINT_URL") or ""
    return _client(service, region, endpoint, os.environ.get("AWS_ACCESS_KEY_ID", ""), config or RETRIES)


@cache
def _client(service: str, region: str, endpoint: str, _key_id: str, config: Config) -> Any:
    # Clients are thread-safe, sessions are not: one session per client. `endpoint` and `_key_id` only key the
    # cache, so a changed environment (another moto server, other credentials) gets a fresh client.
    session = boto3.session.Session()
    return session.client(service, region_name=region or None, endpoint_url=endpoint or None, config=config)
