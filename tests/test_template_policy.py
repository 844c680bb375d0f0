"""cfn-nag-style review of deploy/template.json: least privilege, encryption, alarms, the job type switch.

The template is rendered with concrete parameters (a small CloudFormation intrinsic evaluator, template_render.py)
and the role's policy is asked real questions (may it PutObject here?) by a small IAM Allow evaluator, so a widened
grant fails.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alarm_math import state
from template_render import ACCOUNT, REGION, TEMPLATE, TEMPLATE_PATH, Rendered, put_metric_alarm_request, render

from streaming.adapters import aws
from streaming.cli.glue_entry import load_config
from streaming.ledger.dynamodb import INDEX
from streaming.ops.ready_queries import QUERIES
from streaming.pipeline import metrics as job_metrics
from streaming.pipeline.batch import BatchResult
from streaming.pipeline.deps import BatchStats
from streaming.pipeline.metrics import batch_metrics, waiting_metrics

ROOT = Path(__file__).resolve().parents[1]
GIVEN_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000aaaa-given"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            if key not in context:
                return False
            value, options = context[key], _as_list(wanted)
            if operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(value, o) for o in options)
            elif operator in ("StringEquals", "ArnEquals"):
                ok = value in options
            else:
                raise AssertionError(f"evaluator does not know {operator}")
            if not ok:
                return False
    return True


def allowed(
    statements: list[dict[str, Any]], action: str, resource: str, context: dict[str, str] | None = None
) -> bool:
    """Whether some Allow statement grants `action` on `resource` (IAM wildcards, conditions on `context`)."""
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(s["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"])):
            continue
        if _condition_holds(s.get("Condition", {}), context or {}):
            return True
    return False


def _s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


# --- least privilege ---------------------------------------------------------------------------------------------


def test_the_role_has_no_managed_policy_and_no_wildcard_action() -> None:
    role = TEMPLATE["Resources"]["JobRole"]["Properties"]
    assert "ManagedPolicyArns" not in role  # AWSGlueServiceRole grants Glue and S3 rights on "*"
    actions = [a for s in render().statements() for a in _as_list(s["Action"])]
    assert actions and all(re.fullmatch(r"[a-z0-9]+:[A-Za-z]+", a) for a in actions), actions


@pytest.mark.parametrize("key", ["", GIVEN_KEY])
def test_every_resource_is_named_and_inside_the_stacks_prefixes(key: str) -> None:
    r = render(KmsKeyArn=key)
    p = r.params
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{p['LedgerTableName']}"
    expected = {
        "arn:aws:s3:::landing-b",
        "arn:aws:s3:::landing-b/fhir/encounter",  # S3A's HEAD on the prefix key before it lists
        "arn:aws:s3:::landing-b/fhir/encounter/*",
        # The archive, on by default: the move into it and the folder markers on both sides.
        "arn:aws:s3:::landing-b/fhir/encounter/",
        "arn:aws:s3:::landing-b/fhir/encounter/*/",
        "arn:aws:s3:::landing-b/fhir/archive",
        "arn:aws:s3:::landing-b/fhir/archive/*",
        "arn:aws:s3:::landing-b/fhir/archive/*/",
        "arn:aws:s3:::lake-b",
        "arn:aws:s3:::lake-b/bronze/*",
        "arn:aws:s3:::lake-b/_checkpoints/stack/bronze/bronze_encounter",  # its root, HEADed before it is listed
        "arn:aws:s3:::lake-b/_checkpoints/stack/bronze/bronze_encounter/*",
        "arn:aws:s3:::lake-b/_spark-ui/stack",  # Spark's event logs, for the Spark UI
        "arn:aws:s3:::lake-b/_spark-ui/stack/*",
        "arn:aws:s3:::artifacts-b/bronze-encounter/0123abcd4567/*",  # the version the job runs, no other
        table,
        f"{table}/index/{INDEX}",
        r.key_arn(),
        *(
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/jobs/bronze-encounter-security-role/{group}{streams}"
            for group in ("*/output", "*/error", "continuous-bronze-encounter-security")
            for streams in ("", ":*")
        ),
        f"{glue}:catalog",
        f"{glue}:database/bronze",
        f"{glue}:table/bronze/*",
    }
    named = set()
    for s in r.statements():
        resources = _as_list(s["Resource"])
        if resources == ["*"]:
            # PutMetricData has no resource-level permissions: the namespace condition is what narrows it.
            assert s["Action"] == ["cloudwatch:PutMetricData"], s
            assert set(s["Condition"]) == {"StringEquals"} and set(s["Condition"]["StringEquals"]) == {
                "cloudwatch:namespace"
            }
            continue
        assert "*" not in resources, s
        named |= set(resources)
    assert named == expected


def _job_paths(r: Rendered) -> dict[str, str]:
    job = r.props("StreamingJob")
    args = job["DefaultArguments"]
    return {
        "source": args["--source"],
        "warehouse": args["--warehouse"],
        "checkpoint": args["--checkpoint"],
        "wheel": args["--additional-python-modules"],
        "conf": args["--extra-files"],
        "script": job["Command"]["ScriptLocation"],
    }


def test_the_role_reads_landing_writes_warehouse_and_checkpoint_reads_artifacts_and_nothing_else() -> None:
    r = render(WarehousePrefix="lake/bronze/", ArchivePrefix="off")  # the archive's grants: the test below
    statements, paths = r.statements(), _job_paths(r)

    def obj(action: str, uri: str) -> bool:
        bucket, key = _s3(uri)
        return allowed(statements, f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}")

    def lists(uri: str) -> bool:
        bucket, key = _s3(uri)
        return allowed(statements, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": key})

    landed = paths["source"] + "2026/11/26/bundle-1.ndjson"
    assert obj("GetObject", landed) and lists(paths["source"])
    assert not obj("PutObject", landed) and not obj("DeleteObject", landed)  # without an archive, read-only
    assert not obj("GetObject", "s3://landing-b/other/x.ndjson") and not lists("s3://landing-b/")

    for base in (paths["warehouse"] + "bronze_encounter/.hoodie/", paths["checkpoint"] + "offsets/"):
        for action in ("GetObject", "PutObject", "DeleteObject"):
            assert obj(action, base + "0"), (action, base)
        assert lists(base)
    assert obj("GetObject", paths["checkpoint"].rstrip("/"))  # the root key Spark checks before it lists
    # The rest of the lakehouse bucket (other layers, other jobs, other stacks' checkpoints) is out of reach.
    others = (
        "s3://lake-b/_checkpoints/other-stack/lake/bronze/bronze_encounter/offsets/0",
        "s3://lake-b/_checkpoints/x",
    )
    for elsewhere in ("s3://lake-b/silver/x", "s3://lake-b/bronze/x", "s3://lake-b/x", *others):
        assert not obj("GetObject", elsewhere) and not obj("PutObject", elsewhere)
    assert not lists("s3://lake-b/") and not lists("s3://lake-b/silver/") and not lists("s3://lake-b/_checkpoints/")
    for artifact in (paths["wheel"], paths["conf"], paths["script"]):
        assert obj("GetObject", artifact) and not obj("PutObject", artifact) and not obj("DeleteObject", artifact)
    assert not obj("GetObject", "s3://artifacts-b/other-team/secret.txt")
    assert not obj("GetObject", "s3://artifacts-b/bronze-encounter/89abcdef0123/glue.toml")  # another version


def test_the_job_runs_one_version_whose_files_live_under_its_name_and_the_stack_records_it() -> None:
    r = render(ArtifactsVersion="89abcdef0123", PreviousVersion="0123abcd4567")
    paths = _job_paths(r)
    base = "s3://artifacts-b/bronze-encounter/89abcdef0123/"
    assert (paths["wheel"], paths["conf"], paths["script"]) == (
        base + "bronze_encounter-0.1.0-py3-none-any.whl",
        base + "glue.toml",
        base + "glue_entry.py",
    )
    outputs = TEMPLATE["Outputs"]
    assert (r._eval(outputs["Version"]["Value"]), r._eval(outputs["PreviousVersion"]["Value"])) == (
        "89abcdef0123",
        "0123abcd4567",
    )
    assert "Default" not in TEMPLATE["Parameters"]["ArtifactsVersion"]  # a deploy always names the version


def test_a_checkpoint_belongs_to_one_stack_and_one_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stacks on one bucket, or one stack pointed at a new warehouse, never share a checkpoint."""
    monkeypatch.chdir(tmp_path)

    def checkpoint(**kwargs: str) -> str:
        return str(_job_paths(render(**kwargs))["checkpoint"])

    assert checkpoint() == "s3://lake-b/_checkpoints/stack/bronze/bronze_encounter/"
    assert checkpoint(stack="prod-b") == "s3://lake-b/_checkpoints/prod-b/bronze/bronze_encounter/"
    assert checkpoint(WarehousePrefix="rebuilt/bronze/") == (
        "s3://lake-b/_checkpoints/stack/rebuilt/bronze/bronze_encounter/"
    )
    # The job takes it as its --checkpoint, and it stays outside the warehouse (which analysts may read).
    r = render()
    config = load_config(["--checkpoint", checkpoint(), "--warehouse", _job_paths(r)["warehouse"]])
    assert config.checkpoint_uri == checkpoint() and not checkpoint().startswith(config.warehouse)
    assert checkpoint().endswith(f"/{config.tables.encounter}/")  # named after the table the job writes
    outputs = TEMPLATE["Outputs"]["Checkpoint"]["Value"]
    assert r._eval(outputs) == checkpoint()


def test_the_archive_is_on_by_default_and_off_only_when_asked() -> None:
    """A default deploy moves ingested files out of the landing prefix, so listing stays flat."""
    default, off = render(), render(ArchivePrefix="off")
    assert default.props("StreamingJob")["DefaultArguments"]["--source-archive"] == "s3://landing-b/fhir/archive/"
    assert "--source-archive" not in off.props("StreamingJob")["DefaultArguments"]
    # Beside the landing prefix, not inside it (the job refuses an archive it would list again).
    archive, landing = TEMPLATE["Parameters"]["ArchivePrefix"]["Default"], TEMPLATE["Parameters"]["LandingPrefix"]
    assert (
        not archive.startswith(landing["Default"]) and archive.rsplit("/", 2)[0] == landing["Default"].rsplit("/", 2)[0]
    )
    # "off" is the one way to turn it off: an empty value (the old default) is not a choice the template accepts.
    pattern = TEMPLATE["Parameters"]["ArchivePrefix"]["AllowedPattern"]
    assert re.fullmatch(pattern, "off") and not re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "fhir/*/") and not re.fullmatch(pattern, "/abs/")


def test_with_an_archive_prefix_the_role_may_move_landed_files_there_and_nothing_more() -> None:
    off, on = render(ArchivePrefix="off"), render(ArchivePrefix="fhir/archive/")
    added = {s["Sid"] for s in on.statements()} - {s["Sid"] for s in off.statements()}
    assert added == {
        "ListArchive",
        "ArchiveRoot",
        "WriteArchive",
        "ArchiveFolderMarkers",
        "MoveOutOfLanding",
        "LandingFolderMarkers",
    }
    assert on.props("StreamingJob")["DefaultArguments"]["--source-archive"] == "s3://landing-b/fhir/archive/"
    # Spark moves s3://landing-b/fhir/encounter/<key> to <archive>/fhir/encounter/<key>.
    landed = "fhir/encounter/2026/11/26/bundle-1.ndjson"
    moved = "fhir/archive/" + landed
    for r, archived in ((off, False), (on, True)):
        statements = r.statements()

        def obj(action: str, key: str, statements: list[dict[str, Any]] = statements) -> bool:
            return allowed(statements, f"s3:{action}", f"arn:aws:s3:::landing-b/{key}")

        def lists(prefix: str, statements: list[dict[str, Any]] = statements) -> bool:
            return allowed(statements, "s3:ListBucket", "arn:aws:s3:::landing-b", {"s3:prefix": prefix})

        # The move: HEAD and copy to the archive, delete from landing, folder markers on both sides.
        assert obj("DeleteObject", landed) is archived
        assert obj("PutObject", moved) is archived and obj("GetObject", moved) is archived
        assert lists("fhir/archive/fhir/encounter/2026/") is archived
        assert obj("PutObject", "fhir/encounter/2026/11/26/") is archived  # an emptied folder's marker
        assert obj("PutObject", "fhir/encounter/") is archived
        assert obj("DeleteObject", "fhir/archive/fhir/encounter/") is archived  # a marker above a moved file
        # S3A's mkdirs HEADs the archive root key itself (no slash) before it creates folders below it.
        assert obj("GetObject", "fhir/archive") is archived
        assert not obj("PutObject", "fhir/archive") and not obj("DeleteObject", "fhir/archive")
        # Never: write a file into landing, delete an archived file, or reach outside the two prefixes.
        assert not obj("PutObject", landed)
        assert not obj("DeleteObject", moved)
        for key in ("other/x.ndjson", "fhir/x.ndjson", "fhir/", "x"):
            assert not obj("PutObject", key) and not obj("DeleteObject", key), key
        assert not lists("fhir/") and not lists("")


@pytest.mark.parametrize("archive", ["off", "fhir/archive/"])
def test_s3a_may_head_the_exact_prefix_keys_and_not_their_siblings(archive: str) -> None:
    """Glue 5.1's S3A HEADs `fhir/encounter` (no slash) before listing it: that key, and no sibling prefix."""
    statements = render(ArchivePrefix=archive).statements()

    def get(key: str) -> bool:
        return allowed(statements, "s3:GetObject", f"arn:aws:s3:::landing-b/{key}")

    assert get("fhir/encounter") and get("fhir/encounter/2026/a.ndjson")
    for sibling in ("fhir/encounters", "fhir/encounter-old/a.ndjson", "fhir/encounterX", "fhir/enc", "fhir"):
        assert not get(sibling), sibling  # `fhir/encounter*` would have matched the first three
    assert get("fhir/archive") is (archive != "off")
    assert not get("fhir/archive-2/a.ndjson") and not get("fhir/archives")
    # The same for a landing prefix one level deep and one three levels deep.
    for prefix, key in (("landing/", "landing"), ("a/b/c/", "a/b/c")):
        deep = render(LandingPrefix=prefix, ArchivePrefix="off").statements()
        assert allowed(deep, "s3:GetObject", f"arn:aws:s3:::landing-b/{key}")
        assert not allowed(deep, "s3:GetObject", f"arn:aws:s3:::landing-b/{key}x")
    # '*' or '?' in a prefix would be a wildcard in every grant named after it: the template refuses them.
    for name in ("LandingPrefix", "ArchivePrefix"):
        pattern = TEMPLATE["Parameters"][name]["AllowedPattern"]
        assert re.fullmatch(pattern, "fhir/encounter/") and not re.fullmatch(pattern, "fhir/enc*/")
        assert not re.fullmatch(pattern, "fhir/enc?/") and not re.fullmatch(pattern, "fhir/encounter")


def _arns(node: Any) -> list[str]:
    """Every ARN-looking string anywhere in a rendered document."""
    if isinstance(node, dict):
        return [a for v in node.values() for a in _arns(v)]
    if isinstance(node, list):
        return [a for v in node for a in _arns(v)]
    return [node] if isinstance(node, str) and node.startswith("arn:") else []


def test_every_arn_names_the_stacks_partition() -> None:
    """GovCloud and China are other partitions: an ARN spelled `arn:aws:` would grant nothing there."""
    assert '"arn:aws:' not in TEMPLATE_PATH.read_text()
    china = render(partition="aws-cn")
    arns = _arns(china.resources)
    assert len(arns) > 20 and all(a.startswith("arn:aws-cn:") for a in arns), [a for a in arns if "aws-cn" not in a]


def test_only_glue_51_is_allowed() -> None:
    """Glue 5.0 ships Hudi 0.15 and EMRFS; the job is built for 5.1's Hudi 1.0.2 and S3A."""
    assert TEMPLATE["Parameters"]["GlueVersion"]["AllowedValues"] == ["5.1"]
    assert render().props("StreamingJob")["GlueVersion"] == "5.1"


def test_spark_ui_event_logs_go_to_the_stacks_own_prefix_and_the_role_writes_only_there() -> None:
    r = render()
    args = r.props("StreamingJob")["DefaultArguments"]
    assert (args["--enable-spark-ui"], args["--spark-event-logs-path"]) == ("true", "s3://lake-b/_spark-ui/stack/")
    # Written under the job's security configuration, so SSE-KMS with the stack's key like the tables.
    assert r.props("StreamingJob")["SecurityConfiguration"] == r.props("SecurityConfiguration")["Name"]
    statements = r.statements()
    log = "arn:aws:s3:::lake-b/_spark-ui/stack/eventlog_v2_spark-1/events_1_spark-1"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):  # rolling logs are renamed: copy + delete
        assert allowed(statements, action, log), action
        assert not allowed(statements, action, log.replace("/stack/", "/other-stack/")), action
    assert allowed(statements, "s3:ListBucket", "arn:aws:s3:::lake-b", {"s3:prefix": "_spark-ui/stack/eventlog_v2"})
    assert not allowed(statements, "s3:ListBucket", "arn:aws:s3:::lake-b", {"s3:prefix": "_spark-ui/"})
    assert r._eval(TEMPLATE["Outputs"]["SparkUiLogs"]["Value"]) == args["--spark-event-logs-path"]


def test_deleting_the_stack_keeps_the_catalog_the_ledger_and_the_key() -> None:
    for name in ("Database", "LedgerTable", "Key"):
        resource = TEMPLATE["Resources"][name]
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain"), name


def _ledger_operations() -> set[str]:
    """The DynamoDB IAM actions streaming/ledger/dynamodb.py's DynamoDbLedger needs, read from its source."""
    tree = ast.parse((ROOT / "streaming" / "ledger" / "dynamodb.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DynamoDbLedger"]
    transact = {
        "Put": "PutItem",
        "Update": "UpdateItem",
        "Delete": "DeleteItem",
        "ConditionCheck": "ConditionCheckItem",
    }
    found: set[str] = set()
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in ("_client", "_lease_client")
            and node.attr not in ("exceptions", "get_paginator", "transact_write_items")
        ):
            found.add("".join(part.capitalize() for part in node.attr.split("_")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_paginator":
            found.add(node.args[0].value.capitalize())  # type: ignore[attr-defined]
        if isinstance(node, ast.Dict):  # TransactWriteItems is authorised per item kind, not as an action
            found |= {transact[k.value] for k in node.keys if isinstance(k, ast.Constant) and k.value in transact}
    return {f"dynamodb:{op}" for op in found}


def test_the_ledger_grant_is_exactly_what_the_ledger_code_calls() -> None:
    r = render()
    (ledger,) = [s for s in r.statements() if s["Sid"] == "Ledger"]
    operations = _ledger_operations()
    assert {"dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"} <= operations  # parser sanity
    assert set(ledger["Action"]) == operations
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/bronze_encounter_ledger"
    assert ledger["Resource"] == [table, f"{table}/index/{INDEX}"]
    assert not allowed(r.statements(), "dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other")
    assert not allowed(r.statements(), "dynamodb:DeleteTable", table)


def test_log_grant_covers_exactly_the_log_groups_glue_names_for_the_security_configuration() -> None:
    """AWS's naming for a job with a security configuration that encrypts logs (cited in docs/deploy.md's role table).

    Glue 2.0 and later: `/aws-glue/jobs/<security configuration>-role/<role name>/output` and `.../error`
    (docs.aws.amazon.com/glue/latest/dg/reduced-start-times-spark-etl-jobs.html, "Logging"); a continuous log group
    gets `-<security configuration>` appended (docs.aws.amazon.com/glue/latest/dg/monitor-continuous-logging.html).
    """
    r = render(JobName="enc-prod")
    statements = r.statements()
    configuration = r.props("StreamingJob")["SecurityConfiguration"]
    assert configuration == r.props("SecurityConfiguration")["Name"] == "enc-prod-security"
    role = "stack-JobRole-ABC"  # the role's generated name; the policy cannot name it (its own policy)
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    continuous = r.props("StreamingJob")["DefaultArguments"]["--continuous-log-logGroup"] + f"-{configuration}"
    glue_names = [
        f"/aws-glue/jobs/{configuration}-role/{role}/output",
        f"/aws-glue/jobs/{configuration}-role/{role}/error",
        continuous,
    ]
    assert continuous == "/aws-glue/jobs/enc-prod-security-role/continuous-enc-prod-security"
    for group in glue_names:
        for action in ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"):
            assert allowed(statements, action, arn + group), (action, group)
            assert allowed(statements, action, f"{arn}{group}:*"), (action, group)
            assert allowed(statements, action, f"{arn}{group}:log-stream:jr_1-driver"), (action, group)
    refused = [
        "/aws-glue/jobs/output",  # Glue's shared groups without a security configuration
        "/aws-glue/jobs/logs-v2",
        f"/aws-glue/jobs/{configuration}-role/{role}/other",
        f"/aws-glue/jobs/{configuration}-role/continuous",  # the name as given, before Glue appends the suffix
        "/aws-glue/jobs/other-job-security-role/stack-JobRole-ABC/output",  # another job's
        f"/aws-glue/jobs-{role}-{configuration}/",  # the API reference's JobRun.LogGroupName wording: not what runs
    ]
    for group in refused:
        assert not allowed(statements, "logs:PutLogEvents", f"{arn}{group}:log-stream:jr_1-driver"), group
        assert not allowed(statements, "logs:CreateLogGroup", arn + group), group
    # CloudWatch Logs may use the key for every one of those groups (the key policy's encryption context).
    (logs_on_key,) = [
        s for s in r.props("Key")["KeyPolicy"]["Statement"] if s["Sid"] == "CloudWatchLogsEncryptsTheJobLogs"
    ]
    pattern = logs_on_key["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert all(fnmatch.fnmatchcase(arn + group, pattern) for group in glue_names)


def test_metrics_may_go_to_the_jobs_namespace_and_glues_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config([])
    statements = render().statements()
    for namespace in (config.metrics.namespace, "Glue"):  # Glue's own job metrics (--enable-metrics)
        assert allowed(statements, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace})
    assert not allowed(statements, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Billing"})
    assert not allowed(statements, "cloudwatch:PutMetricData", "*")


# --- encryption --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", GIVEN_KEY])
def test_one_key_encrypts_ledger_job_output_logs_bookmarks_and_alarms(key: str) -> None:
    r = render(KmsKeyArn=key)
    arn = r.key_arn()
    assert ("Key" in r.resources) == (key == "")  # a given key is used, not a second one created
    if not key:
        assert r.props("Key")["EnableKeyRotation"] is True
        assert r.resources["Key"]["DeletionPolicy"] == "Retain"  # deleting the stack must not orphan the data

    ledger = r.props("LedgerTable")
    assert ledger["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": arn}
    assert ledger["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}

    enc = r.props("SecurityConfiguration")["EncryptionConfiguration"]
    assert enc["S3Encryptions"] == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": arn}]
    assert enc["CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": arn}
    assert enc["JobBookmarksEncryption"] == {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": arn}
    assert r.props("StreamingJob")["SecurityConfiguration"] == r.props("SecurityConfiguration")["Name"]
    assert r.props("AlarmTopic")["KmsMasterKeyId"] == arn

    statements = r.statements()
    kms = [s for s in statements if any(a.startswith("kms:") for a in _as_list(s["Action"]))]
    assert [s["Resource"] for s in kms] == [[arn]]
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(kms[0]["Action"])
    assert not allowed(statements, "kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/someone-elses")
    assert not allowed(statements, "kms:ScheduleKeyDeletion", arn)


def test_the_created_key_lets_logs_and_alarm_services_use_it_only_for_this_account() -> None:
    policy = render().props("Key")["KeyPolicy"]["Statement"]
    services = {s["Sid"]: s for s in policy if "Service" in s["Principal"]}
    logs = services["CloudWatchLogsEncryptsTheJobLogs"]
    assert logs["Principal"]["Service"] == f"logs.{REGION}.amazonaws.com"
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(":log-group:/aws-glue/jobs/*")
    alarms = services["AlarmsPublishToTheEncryptedTopic"]
    assert set(alarms["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


# --- alarms ------------------------------------------------------------------------------------------------------


def test_a_failed_timed_out_or_stopped_run_of_this_job_notifies_the_topic() -> None:
    r = render(JobName="enc-prod")
    rule = r.props("JobStateRule")
    assert rule["EventPattern"] == {
        "source": ["aws.glue"],
        "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": ["enc-prod"], "state": ["FAILED", "TIMEOUT", "STOPPED"]},
    }
    topic = r._ref("AlarmTopic")
    assert [t["Arn"] for t in rule["Targets"]] == [topic]
    # The topic lets exactly that rule publish (and CloudWatch alarms of this account).
    (policy,) = [s for s in r.props("AlarmTopicPolicy")["PolicyDocument"]["Statement"] if s["Sid"] == "JobStateRule"]
    assert policy["Resource"] == topic
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": r._get_att("JobStateRule", "Arn")}}
    assert ("AlarmSubscription" in r.resources) is False
    subscribed = render(JobName="enc-prod", AlarmEmail="oncall@example.org").props("AlarmSubscription")
    assert (subscribed["TopicArn"], subscribed["Endpoint"]) == (topic, "oncall@example.org")


# What the job publishes (streaming/pipeline/metrics.py, one table): the alarms and the dashboard may watch only these.
JOB_METRICS = frozenset(job_metrics.METRICS)
BLOCKED_REASONS = frozenset(job_metrics.BLOCKED_REASONS)
ALARMS = (
    "FallingBehindAlarm",
    "StalledAlarm",
    "HeartbeatAlarm",
    "BlockedFileUnreadableAlarm",
    "BlockedLedgerUnavailableAlarm",
    "FilesOverwrittenAlarm",
    "QuarantineShareAlarm",
)


def _published_metric_names() -> set[str]:
    """Every metric name the job's metrics module publishes today (a batch with lag and a backlog reading)."""
    now = datetime.now(UTC)
    result = BatchResult("b", ("f",), 0, BatchStats(rows_rejected=1), 1, 1.0, now, now)

    class Backlog:
        count, oldest_age_seconds = 3, 42.0

    return {name for name, _, _ in batch_metrics(result) + waiting_metrics(Backlog())}


def test_the_metric_list_holds_everything_the_job_publishes_today() -> None:
    assert _published_metric_names() <= JOB_METRICS


def _watched(r: Rendered) -> list[tuple[str, str, list[dict[str, str]]]]:
    """(namespace, metric, dimensions) of every metric the alarms watch."""
    found = []
    for name in ALARMS:
        alarm = r.props(name)
        if "Metrics" in alarm:
            found += [
                (
                    q["MetricStat"]["Metric"]["Namespace"],
                    q["MetricStat"]["Metric"]["MetricName"],
                    q["MetricStat"]["Metric"]["Dimensions"],
                )
                for q in alarm["Metrics"]
                if "MetricStat" in q
            ]
        else:
            found.append((alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]))
    return found


def _dashboard(r: Rendered) -> dict[str, Any]:
    return json.loads(r.props("Dashboard")["DashboardBody"])


def test_alarms_and_dashboard_watch_metrics_the_job_publishes_under_its_namespace_and_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config([])  # the Glue settings (glue.toml): namespace and table name the job publishes under
    r = render()
    table = {"Name": "Table", "Value": config.tables.encounter}
    alarmed = _watched(r)
    rows = [row for w in _dashboard(r)["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]]
    graphed = [
        (row[0], row[1], [{"Name": k, "Value": v} for k, v in zip(row[2:-1:2], row[3:-1:2], strict=True)])
        for row in rows
        if isinstance(row[0], str)
    ]
    # The views' metrics: one line per view, whichever views.run names, by a search over the View dimension.
    searched = []
    for (row,) in (row for row in rows if isinstance(row[0], dict)):
        found = re.fullmatch(
            r"SEARCH\('\{(\w+),Table,View\} MetricName=\"(\w+)\" Table=\"(\w+)\"', '\w+', \d+\)", row["expression"]
        )
        assert found, row
        namespace, metric, named = found.groups()
        assert (namespace, named, metric in JOB_METRICS) == (config.metrics.namespace, config.tables.encounter, True)
        assert row["label"].startswith("${PROP('Dim.View')} "), row  # each line named after its view
        searched.append(metric)
    assert sorted(searched) == sorted(m for m in JOB_METRICS if m.startswith("View"))
    for namespace, metric, dimensions in alarmed + graphed:
        assert (namespace, metric in JOB_METRICS) == (config.metrics.namespace, True), metric
        assert dimensions[0] == table, (metric, dimensions)
        others = dimensions[1:]
        if metric == "Blocked":
            assert [d["Name"] for d in others] == ["Reason"] and others[0]["Value"] in BLOCKED_REASONS, dimensions
        else:
            assert others == [], dimensions
    # Each reason the job can block on has its own alarm; every published metric is on the dashboard.
    assert {d[1]["Value"] for _, m, d in alarmed if m == "Blocked"} == BLOCKED_REASONS
    assert {m for _, m, _ in graphed} | set(searched) == JOB_METRICS


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears() -> None:
    r = render()
    topic = r._ref("AlarmTopic")
    for name in ALARMS:
        alarm = r.props(name)
        assert (alarm["AlarmActions"], alarm["OKActions"]) == ([topic], [topic]), name
        assert alarm["AlarmName"].startswith("bronze-encounter-"), name
    alarm_resources = {n for n, res in r.resources.items() if res["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarm_resources == set(ALARMS)
    # The dashboard shows the state of each of them.
    (panel,) = [w for w in _dashboard(r)["widgets"] if w["type"] == "alarm"]
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
    assert panel["properties"]["alarms"] == [arn + r.props(n)["AlarmName"] for n in ALARMS]


def test_thresholds_are_parameters() -> None:
    r = render(
        OldestWaitingThresholdSeconds="1800",
        StalledMinutes="30",
        HeartbeatMissingMinutes="20",
        BlockedMinutes="7",
        RejectedPercentThreshold="2",
        RejectedMinimumRows="50",
        RejectedHours="3",
        FilesOverwrittenThreshold="4",
    )
    assert r.props("FallingBehindAlarm")["Threshold"] == "1800"
    for name, periods in (
        ("StalledAlarm", "30"),
        ("HeartbeatAlarm", "20"),
        ("BlockedFileUnreadableAlarm", "7"),
        ("BlockedLedgerUnavailableAlarm", "7"),
        ("QuarantineShareAlarm", "3"),
    ):
        alarm = r.props(name)
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (periods, periods), name
    share = r.props("QuarantineShareAlarm")
    assert share["Threshold"] == "2" and ">= 50," in share["Metrics"][-1]["Expression"]
    assert r.props("FilesOverwrittenAlarm")["Threshold"] == "4"
    assert "RowsRejectedThreshold" not in TEMPLATE["Parameters"]  # replaced by the share, its minimum and hours


def _minutes(*values: float | None) -> list[float | None]:
    return list(values)


def test_a_stream_that_stalls_with_files_waiting_pages_and_one_that_commits_does_not() -> None:
    stalled = render().props("StalledAlarm")  # 15 minutes by default
    quiet: list[float | None] = [None] * 20
    # Files wait for 20 minutes and no batch commits: page.
    assert state(stalled, {"FilesWaiting": [3.0] * 20, "Files": quiet}) == "ALARM"
    # The same, with the backlog measured only every 5 minutes (REPEAT carries it between): page.
    sparse = [3.0 if i % 5 == 0 else None for i in range(20)]
    assert state(stalled, {"FilesWaiting": sparse, "Files": quiet}) == "ALARM"
    # Files wait but a batch commits every 5 minutes: keeping up, no page.
    every_five = [2.0 if i % 5 == 4 else None for i in range(20)]
    assert state(stalled, {"FilesWaiting": [3.0] * 20, "Files": every_five}) == "OK"
    # Ten minutes stalled: not yet.
    assert state(stalled, {"FilesWaiting": [3.0] * 10, "Files": [None] * 10}) == "OK"
    # Nothing waits and nothing runs: an idle stream is fine.
    assert state(stalled, {"FilesWaiting": [0.0] * 20, "Files": quiet}) == "OK"


def test_a_job_that_stops_publishing_its_heartbeat_pages() -> None:
    heartbeat = render().props("HeartbeatAlarm")  # 10 minutes by default
    assert heartbeat["TreatMissingData"] == "breaching"  # a dead job publishes nothing at all
    assert state(heartbeat, {"Heartbeat": [1.0] * 30}) == "OK"
    assert state(heartbeat, {"Heartbeat": [1.0] * 20 + [None] * 10}) == "ALARM"
    assert state(heartbeat, {}) == "ALARM"  # never published
    assert state(heartbeat, {"Heartbeat": [1.0] * 20 + [None] * 9 + [1.0]}) == "OK"  # a deploy's restart
    assert state(heartbeat, {"Heartbeat": [1.0, None] * 15}) == "OK"  # a tick that fell in the next minute


def test_a_stream_blocked_for_minutes_pages_with_its_reason() -> None:
    r = render()  # 10 minutes by default
    for reason, name in (
        ("file_unreadable", "BlockedFileUnreadableAlarm"),
        ("ledger_unavailable", "BlockedLedgerUnavailableAlarm"),
    ):
        alarm = r.props(name)
        assert alarm["AlarmName"] == "bronze-encounter-blocked-" + reason.replace("_", "-")  # the page says why
        assert state(alarm, {f"Blocked:{reason}": [1.0] * 10}) == "ALARM"
        assert state(alarm, {f"Blocked:{reason}": [None] + [1.0] * 9}) == "OK"
        assert state(alarm, {}) == "OK"  # never blocked: the job publishes nothing for it
        (other,) = BLOCKED_REASONS - {reason}
        assert state(alarm, {f"Blocked:{other}": [1.0] * 10}) == "OK"  # the other reason's alarm fires


def test_quarantine_pages_on_a_sustained_share_not_on_one_record() -> None:
    share = render().props("QuarantineShareAlarm")  # > 5 % of rows, >= 20 rows, 2 hours in a row
    assert state(share, {"RowsRejected": [1.0, 1.0], "RowsIn": [1.0, 1.0]}) == "OK"  # one bad record an hour
    assert state(share, {"RowsRejected": [30.0, 30.0], "RowsIn": [10_000.0, 10_000.0]}) == "OK"  # 0.3 %
    assert state(share, {"RowsRejected": [30.0, None], "RowsIn": [100.0, 100.0]}) == "OK"  # one bad hour
    assert state(share, {"RowsRejected": [30.0, 40.0], "RowsIn": [100.0, 200.0]}) == "ALARM"
    assert state(share, {"RowsRejected": [None, None], "RowsIn": [None, None]}) == "OK"  # no batches


def test_files_overwritten_in_place_page_at_once_and_falling_behind_after_two_periods() -> None:
    r = render()
    overwritten = r.props("FilesOverwrittenAlarm")
    assert state(overwritten, {"FilesOverwritten": [1.0]}) == "ALARM"
    assert state(overwritten, {"FilesOverwritten": [0.0]}) == "OK" == state(overwritten, {})
    behind = r.props("FallingBehindAlarm")
    assert state(behind, {"OldestWaitingSeconds": [1000.0, 1200.0]}) == "ALARM"
    assert state(behind, {"OldestWaitingSeconds": [1000.0, 100.0]}) == "OK"


def test_cloudwatch_accepts_the_alarms_and_the_dashboard(aws_env: str) -> None:
    """moto's CloudFormation skips alarms: put them through the CloudWatch API, which checks their shape."""
    r = render(JobName=f"cw-{uuid.uuid4().hex[:8]}")
    cloudwatch = aws.client("cloudwatch")
    for name in ALARMS:
        cloudwatch.put_metric_alarm(**put_metric_alarm_request(r.props(name)))
    described = cloudwatch.describe_alarms(AlarmNamePrefix=r.params["JobName"])["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in described) == sorted(r.props(n)["AlarmName"] for n in ALARMS)
    stalled = next(a for a in described if a["AlarmName"].endswith("-stalled"))
    assert [m["Id"] for m in stalled["Metrics"]] == ["waiting", "files", "stalled"]
    dashboard = r.props("Dashboard")
    cloudwatch.put_dashboard(DashboardName=dashboard["DashboardName"], DashboardBody=dashboard["DashboardBody"])
    stored = cloudwatch.get_dashboard(DashboardName=dashboard["DashboardName"])["DashboardBody"]
    assert json.loads(stored) == _dashboard(r)


# --- analysts ----------------------------------------------------------------------------------------------------


def _reader(r: Rendered) -> list[dict[str, Any]]:
    return r.props("ReaderPolicy")["PolicyDocument"]["Statement"]


def test_the_reader_policy_grants_exactly_athena_reads_of_the_tables() -> None:
    r = render()
    statements = _reader(r)
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert actions == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:GetBucketLocation",
        "s3:PutObject",  # query results, in the workgroup's result prefix only
        "s3:AbortMultipartUpload",
        "kms:Decrypt",
        "kms:GenerateDataKey",  # Athena writes the results SSE-KMS with the same key
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetTables",
        "glue:GetPartition",
        "glue:GetPartitions",
        "glue:BatchGetPartition",
        "athena:StartQueryExecution",
        "athena:StopQueryExecution",
        "athena:GetQueryExecution",
        "athena:GetQueryResults",
        "athena:ListQueryExecutions",
        "athena:GetWorkGroup",
        "athena:ListNamedQueries",
        "athena:GetNamedQuery",
        "athena:BatchGetNamedQuery",
    }
    assert all("*" not in _as_list(s["Resource"]) for s in statements)

    def s3(action: str, key: str) -> bool:
        return allowed(statements, f"s3:{action}", f"arn:aws:s3:::lake-b/{key}")

    def lists(prefix: str) -> bool:
        return allowed(statements, "s3:ListBucket", "arn:aws:s3:::lake-b", {"s3:prefix": prefix})

    table = "bronze/bronze_encounter/"
    assert s3("GetObject", table + "hospital_partition=A/f.parquet") and s3("GetObject", table + ".hoodie/x.commit")
    assert s3("GetObject", "bronze/bronze_encounter_quarantine/q.parquet")  # PHI too: docs/deploy.md, Athena
    assert lists(table) and allowed(statements, "s3:GetBucketLocation", "arn:aws:s3:::lake-b")
    for action in ("PutObject", "DeleteObject"):
        assert not s3(action, table + "f.parquet"), action
    # The job's own prefixes, the landing bucket and the artifacts are out of reach.
    for key in ("_checkpoints/stack/bronze/bronze_encounter/offsets/0", "_spark-ui/stack/x", "silver/x", "x"):
        assert not s3("GetObject", key) and not lists(key), key
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::landing-b/fhir/encounter/a.ndjson")
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::artifacts-b/bronze-encounter/glue.toml")
    # Results: written and read back in the workgroup's prefix only.
    results = r._eval(TEMPLATE["Outputs"]["AthenaResults"]["Value"])
    assert results == "s3://lake-b/_athena-results/stack/"
    for action in ("PutObject", "GetObject"):
        assert s3(action, "_athena-results/stack/q-1.csv") and not s3(action, "_athena-results/other/q-1.csv")
    assert lists("_athena-results/stack/") and not lists("_athena-results/")

    key = r.key_arn()
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    assert allowed(statements, "kms:Decrypt", key, via_s3)
    assert not allowed(statements, "kms:Decrypt", key)  # only S3 may use the key for them
    assert not allowed(statements, "kms:Decrypt", key, {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"})
    assert not allowed(statements, "kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/other", via_s3)

    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    for resource in (f"{glue}:catalog", f"{glue}:database/bronze", f"{glue}:table/bronze/bronze_encounter"):
        assert allowed(statements, "glue:GetTable", resource) or allowed(statements, "glue:GetDatabase", resource)
    assert not allowed(statements, "glue:GetTable", f"{glue}:table/finance/ledger")
    assert not allowed(statements, "glue:UpdateTable", f"{glue}:table/bronze/bronze_encounter")
    workgroup = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/bronze-encounter"
    assert allowed(statements, "athena:StartQueryExecution", workgroup)
    assert not allowed(statements, "athena:StartQueryExecution", workgroup.replace("bronze-encounter", "primary"))
    assert not allowed(statements, "athena:UpdateWorkGroup", workgroup)
    assert not allowed(
        statements, "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/bronze_encounter_ledger"
    )


def test_the_workgroup_encrypts_results_with_the_stacks_key_and_users_cannot_change_that() -> None:
    for key in ("", GIVEN_KEY):
        r = render(KmsKeyArn=key)
        config = r.props("AthenaWorkGroup")["WorkGroupConfiguration"]
        assert config["EnforceWorkGroupConfiguration"] is True
        assert config["ResultConfiguration"] == {
            "OutputLocation": "s3://lake-b/_athena-results/stack/",
            "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": r.key_arn()},
        }


def test_the_ready_queries_are_named_queries_in_the_stacks_workgroup_and_database() -> None:
    from importlib import util

    spec = util.spec_from_file_location("named_queries", ROOT / "deploy" / "named_queries.py")
    assert spec is not None and spec.loader is not None
    named = util.module_from_spec(spec)
    spec.loader.exec_module(named)
    # The template holds what the generator writes from streaming/ops/ready_queries.py (rerun it when they change).
    assert named.with_named_queries(TEMPLATE) == TEMPLATE, "run: python deploy/named_queries.py"
    r = render(DatabaseName="lake_bronze")
    queries = {
        res["Properties"]["Name"]: res["Properties"]
        for res in r.resources.values()
        if res["Type"] == "AWS::Athena::NamedQuery"
    }
    deployed = [q for q in QUERIES if not q.views]  # the stack writes bronze_encounter only
    assert set(queries) == {q.name for q in deployed}
    for q in deployed:
        props = queries[q.name]
        assert (props["Database"], props["WorkGroup"], props["Description"]) == (
            "lake_bronze",
            "bronze-encounter",
            q.description,
        )
        assert props["QueryString"] == re.sub(r"\bbronze\.(bronze_[a-z_]+)", r"lake_bronze.\1", q.sql)
        assert "bronze.bronze_encounter" in q.sql  # the substitution above did something


def test_the_reader_role_exists_only_for_a_named_principal_and_carries_only_the_reader_policy() -> None:
    assert "ReaderRole" not in render().resources
    r = render(ReaderPrincipal="444455556666")
    role = r.props("ReaderRole")
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"AWS": "444455556666"}, "Action": "sts:AssumeRole"}
    ]
    assert role["ManagedPolicyArns"] == [r._ref("ReaderPolicy")] and "Policies" not in role
    pattern = TEMPLATE["Parameters"]["ReaderPrincipal"]["AllowedPattern"]
    for ok in ("", "444455556666", "arn:aws:iam::444455556666:root", "arn:aws-cn:iam::444455556666:role/analysts"):
        assert re.fullmatch(pattern, ok), ok
    for bad in ("*", "arn:aws:iam::*:root", "4444"):
        assert not re.fullmatch(pattern, bad), bad
    # What an analytics account needs, exported under the stack's name.
    outputs = TEMPLATE["Outputs"]
    for name in ("DatabaseName", "Warehouse", "ReaderPolicyArn", "AthenaWorkGroup"):
        assert outputs[name]["Export"] == {"Name": {"Fn::Sub": "${AWS::StackName}-" + name}}, name
    # Not exported: moto 5.2.5 evaluates an export whatever its output's condition, and fails on the absent role.
    assert outputs["ReaderRoleArn"]["Condition"] == "HasReaderPrincipal" and "Export" not in outputs["ReaderRoleArn"]


# --- job type ----------------------------------------------------------------------------------------------------


def test_streaming_by_default_and_glueetl_on_request_run_the_same_script_and_arguments() -> None:
    streaming, etl = render(), render(JobCommand="glueetl", EtlTimeoutMinutes="720")
    s_job, e_job = streaming.props("StreamingJob"), etl.props("StreamingJob")
    assert (s_job["Command"]["Name"], s_job["GlueVersion"]) == ("gluestreaming", "5.1")
    assert (e_job["Command"]["Name"], e_job["GlueVersion"]) == ("glueetl", "5.1")
    assert s_job["Command"]["ScriptLocation"] == e_job["Command"]["ScriptLocation"]
    assert s_job["DefaultArguments"] == e_job["DefaultArguments"]
    assert "Timeout" not in s_job  # a streaming job runs until stopped
    assert e_job["Timeout"] == "720"  # a batch job ends with TIMEOUT...
    assert "EtlRestartTrigger" not in streaming.resources
    trigger = etl.props("EtlRestartTrigger")  # ...and this schedule starts the next run from the checkpoint
    assert (trigger["Type"], trigger["Schedule"]) == ("SCHEDULED", "cron(0/15 * * * ? *)")
    assert trigger["Actions"] == [{"JobName": "bronze-encounter"}]
    for job in (s_job, e_job):
        assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}  # a second run is refused, never parallel
    # A glueetl run ends with TIMEOUT by design, so only a failed or stopped run alarms there.
    assert streaming.props("JobStateRule")["EventPattern"]["detail"]["state"] == ["FAILED", "TIMEOUT", "STOPPED"]
    assert etl.props("JobStateRule")["EventPattern"]["detail"]["state"] == ["FAILED", "STOPPED"]
