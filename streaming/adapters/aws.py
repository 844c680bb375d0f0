"""boto3 clients, built one way: AWS or a local stand-in (moto) depending only on the environment.

boto3 itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, so nothing here names an endpoint.
The region follows one rule, `resolve_region()`, for every client and for the stores that are no boto3 client
(S3A, hudi-rs). Retries use botocore's `adaptive` mode: exponential backoff with jitter plus client-side rate
limiting when DynamoDB throttles, instead of a hand-written loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=5, read_timeout=30)


def resolve_region(explicit: str = "", environ: Mapping[str, str] | None = None) -> str:
    """The region: an explicit setting, else AWS_REGION, else AWS_DEFAULT_REGION; empty leaves it to boto3's own
    configuration (the profile's region in ~/.aws/config).

    The pinned boto3 reads only AWS_DEFAULT_REGION, the AWS CLI and the other SDKs AWS_REGION first: asked here,
    `AWS_REGION` alone is enough for every client.
    """
    env = os.environ if environ is None else environ
    return explicit or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""


def client(service: str, region: str = "", config: Config | None = None) -> Any:
    """A client for `service` in `resolve_region(region)`, shared while the endpoint/credential environment stays
    the same."""
    env_key = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"
    endpoint = os.environ.get(env_key) or os.environ.get("AWS_ENDPOINT_URL") or ""
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
    return _client(service, resolve_region(region), endpoint, key_id, config or RETRIES)


@cache
def _client(service: str, region_name: str, endpoint: str, _key_id: str, config: Config) -> Any:
    # Clients are thread-safe, sessions are not: one session per client. `endpoint` and `_key_id` only key the
    # cache, so a changed environment (another moto server, other credentials) gets a fresh client.
    session = boto3.session.Session()
    return session.client(service, region_name=region_name or None, endpoint_url=endpoint or None, config=config)
