"""Pytest plugin: a local AWS (moto in server mode, no Docker) and per-test names, for DynamoDB and S3 tests."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from streaming.adapters import aws

REGION = "us-east-1"
TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "template.json"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the whole run, on a free local port; yields its endpoint URL."""
    # Port 0 lets the OS pick a free port when the server binds it (no bind-close-rebind race).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _point_at(mp: pytest.MonkeyPatch, endpoint: str) -> None:
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    mp.setenv("AWS_REGION", REGION)
    # A developer's profile or session token must never leak into a test against moto.
    mp.delenv("AWS_PROFILE", raising=False)
    mp.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture(scope="session")
def local_aws(moto_endpoint: str) -> Iterator[str]:
    """Point the whole process at moto for the run, so the Spark JVM (s3a) and its Python workers inherit it."""
    with pytest.MonkeyPatch.context() as mp:
        _point_at(mp, moto_endpoint)
        yield moto_endpoint


@pytest.fixture
def aws_env(local_aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point boto3 at the moto server with dummy credentials for one test; yields the endpoint."""
    _point_at(monkeypatch, local_aws)
    yield local_aws


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name valid for both a DynamoDB table and an S3 bucket, unique per test: t-<test name>-<uuid8>."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:8]}" if slug else f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3_bucket(aws_env: str, unique_name: str) -> str:
    """An empty bucket on the moto server, named for this test."""
    aws.client("s3").create_bucket(Bucket=unique_name)  # us-east-1: no LocationConstraint allowed
    return unique_name


def create_ledger_table(name: str) -> None:
    """Create a DynamoDB ledger table on the moto server, shaped as deploy/template.json's `LedgerTable`.

    The template is the table's one definition (production never creates it); read from it, the contract tests run
    the ledger code against exactly that key schema and index.
    """
    props = json.loads(TEMPLATE.read_text())["Resources"]["LedgerTable"]["Properties"]
    shape = {key: props[key] for key in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")}
    client = aws.client("dynamodb")
    client.create_table(TableName=name, **shape)
    client.get_waiter("table_exists").wait(TableName=name)


@pytest.fixture
def cloudformation_like_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Complete moto 5.2.5's CloudFormation where it stops short of AWS, for the deploy and runbook tests.

    moto applies a change set's resources but leaves the stack's outputs, exports, tags and recorded parameters as
    they were (a stack created from a change set has no outputs at all), and it skips AWS::Glue::Job and
    AWS::CloudWatch::Alarm. Here the stack takes the change set's template, parameters and tags and recomputes its
    outputs and exports; its Glue job is created or updated from the template rendered with the stack's parameters
    and DescribeStackResource names it, as CloudFormation would; its alarms are put through CloudWatch's API.
    """
    from moto.cloudformation.models import ChangeSet, CloudFormationBackend, cloudformation_backends
    from moto.glue.models import glue_backends
    from template_render import Rendered, put_metric_alarm_request

    apply = ChangeSet.apply

    def apply_like_aws(change_set: ChangeSet) -> None:
        apply(change_set)
        stack = change_set.stack
        stack.template = change_set.template
        stack._parse_template()
        stack.output_map = stack._create_output_map()
        exports = cloudformation_backends[stack.account_id][stack.region_name].exports
        exports.update({export.name: export for export in stack.exports})  # moto registers them at CreateStack only
        stack.parameters = dict(change_set.parameters)
        # moto diffs the next change set's parameters against the ones passed to this one: keep all of them, as
        # text (as they arrive), or every parameter not passed reads as changed and moto "modifies" resources a
        # false condition left out (and fails on them).
        resolved = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in stack.stack_parameters.items()}
        stack.resource_map.input_parameters = resolved
        if change_set.tags:
            stack.tags = dict(change_set.tags)
        rendered = Rendered(stack.template_dict, resolved, stack=stack.name)
        # The alarms through CloudWatch's own API, from this thread of the (threaded) moto server.
        moto = boto3.session.Session("testing", "testing", region_name=stack.region_name)  # whatever the caller's
        cloudwatch = moto.client("cloudwatch")
        for body in rendered.resources.values():
            if body["Type"] == "AWS::CloudWatch::Alarm":
                cloudwatch.put_metric_alarm(**put_metric_alarm_request(body["Properties"]))
        job = rendered.props("StreamingJob")
        backend = glue_backends[stack.account_id][stack.region_name]
        if job["Name"] in backend.jobs:
            found = backend.jobs[job["Name"]]
            found.command, found.default_arguments = job["Command"], job["DefaultArguments"]
            found.worker_type, found.number_of_workers = job["WorkerType"], int(job["NumberOfWorkers"])
            found.glue_version, found.timeout = job["GlueVersion"], job.get("Timeout")
            return
        backend.create_job(
            name=job["Name"],
            role=job["Role"],
            command=job["Command"],
            description="",
            log_uri="",
            execution_property=job["ExecutionProperty"],
            default_arguments=job["DefaultArguments"],
            non_overridable_arguments={},
            connections={},
            max_retries=job["MaxRetries"],
            allocated_capacity=None,
            timeout=job.get("Timeout"),
            max_capacity=None,
            security_configuration=job["SecurityConfiguration"],
            tags={},
            notification_property={},
            glue_version=job["GlueVersion"],
            number_of_workers=int(job["NumberOfWorkers"]),
            worker_type=job["WorkerType"],
            code_gen_configuration_nodes={},
            execution_class="STANDARD",
            source_control_details={},
        )

    monkeypatch.setattr(ChangeSet, "apply", apply_like_aws)

    def describe_like_aws(backend: CloudFormationBackend, stack_name: str, logical_resource_id: str) -> Any:
        # moto walks every resource and fails (500) on one its CloudFormation skipped; AWS names each, e.g. a Glue
        # job by its Name.
        found = backend.get_stack(stack_name)
        parsed = found.resource_map._parsed_resources
        if parsed.get(logical_resource_id) is not None and not isinstance(parsed[logical_resource_id], str):
            return found, parsed[logical_resource_id]  # a resource moto made (an update leaves None for the rest)
        resolved = {k: str(v) for k, v in found.stack_parameters.items()}
        name = Rendered(found.template_dict, resolved, stack=found.name)._ref(logical_resource_id)
        kind = found.template_dict["Resources"][logical_resource_id]["Type"]
        return found, SimpleNamespace(
            logical_resource_id=logical_resource_id, physical_resource_id=name, cf_resource_type=kind
        )

    monkeypatch.setattr(CloudFormationBackend, "describe_stack_resource", describe_like_aws)


@pytest.fixture
def glue_run_transition(aws_env: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Set how moto moves Glue job runs STARTING -> RUNNING -> SUCCEEDED (its state manager); reset afterwards."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the moto server is local

    def post(action: str, body: dict[str, Any]) -> None:
        url = f"{aws_env}/moto-api/state-manager/{action}"
        with opener.open(urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")) as response:
            assert response.status == 201

    yield lambda transition: post("set-transition", {"model_name": "glue::job_run", "transition": transition})
    post("unset-transition", {"model_name": "glue::job_run"})


@pytest.fixture
def glue_stops_job_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 does not implement BatchStopJobRun (its server answers 500): answer it in the server, as Glue does
    (the run ends STOPPED), for commands the tests run in another process, where a botocore handler cannot reach."""
    from moto.core.responses import ActionResult
    from moto.glue.responses import GlueResponse

    def batch_stop_job_run(response: GlueResponse) -> ActionResult:
        name, run_ids = response._get_param("JobName"), response._get_param("JobRunIds")
        for run_id in run_ids:
            response.glue_backend.get_job_run(name, run_id).status = "STOPPED"
        stopped = [{"JobName": name, "JobRunId": run_id} for run_id in run_ids]
        return ActionResult({"SuccessfulSubmissions": stopped, "Errors": []})

    monkeypatch.setattr(GlueResponse, "batch_stop_job_run", batch_stop_job_run, raising=False)
