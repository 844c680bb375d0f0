"""The CloudFormation template rendered with concrete parameters: a small intrinsic evaluator for the template tests.

Not a test module: test_template_policy.py and test_deploy.py import from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = ROOT / "deploy" / "template.json"
TEMPLATE = json.loads(TEMPLATE_PATH.read_text())

REGION, ACCOUNT = "eu-west-1", "111122223333"
STACK = "stack"  # the stack's name (AWS::StackName); resources CloudFormation names start with it
CREATED_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111bbbb-created"
PARAMS = {
    "LandingBucket": "landing-b",
    "LakehouseBucket": "lake-b",
    "ArtifactsBucket": "artifacts-b",
    "WheelName": "bronze_encounter-0.1.0-py3-none-any.whl",
    "ArtifactsVersion": "0123abcd4567",
}
NO_VALUE = object()


class Rendered:
    """The template with parameters substituted, conditions decided and conditional resources dropped."""

    def __init__(
        self, template: dict[str, Any], overrides: dict[str, str], partition: str = "aws", stack: str = STACK
    ) -> None:
        self.partition, self.stack = partition, stack
        self.params = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()} | overrides
        self.template = template
        self.conditions = {name: self._eval(body) for name, body in template.get("Conditions", {}).items()}
        self.resources = {
            name: self._eval(body)
            for name, body in template["Resources"].items()
            if "Condition" not in body or self.conditions[body["Condition"]]
        }

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack,
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        # What Ref returns for each resource type this template uses (names as CloudFormation reports them).
        refs = {
            "LedgerTable": self.params["LedgerTableName"],
            "StreamingJob": self.params["JobName"],
            "JobRole": "stack-JobRole-ABC",
            "SecurityConfiguration": f"{self.params['JobName']}-security",
            "Key": "1111bbbb-created",
            "AlarmTopic": f"arn:{self.partition}:sns:{REGION}:{ACCOUNT}:{self.params['JobName']}-alarms",
            "JobStateRule": "stack-JobStateRule-XYZ",
            "ReaderPolicy": f"arn:{self.partition}:iam::{ACCOUNT}:policy/stack-ReaderPolicy-DEF",
            "AthenaWorkGroup": self.params["JobName"],
            "Dashboard": self.params["JobName"],
        }
        return refs[name]

    def _get_att(self, name: str, attr: str) -> str:
        atts = {
            (
                "LedgerTable",
                "Arn",
            ): f"arn:{self.partition}:dynamodb:{REGION}:{ACCOUNT}:table/{self.params['LedgerTableName']}",
            ("Key", "Arn"): CREATED_KEY.replace("arn:aws:", f"arn:{self.partition}:"),
            ("JobRole", "Arn"): f"arn:{self.partition}:iam::{ACCOUNT}:role/stack-JobRole-ABC",
            ("JobStateRule", "Arn"): f"arn:{self.partition}:events:{REGION}:{ACCOUNT}:rule/stack-JobStateRule-XYZ",
            ("ReaderRole", "Arn"): f"arn:{self.partition}:iam::{ACCOUNT}:role/stack-ReaderRole-GHI",
        }
        return atts[(name, attr)]

    def _sub(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):  # ${!Literal} is CloudFormation's escape: the text ${Literal}
                return "${" + token[1:] + "}"
            if "." in token and not token.startswith("AWS::"):
                return self._get_att(*token.split(".", 1))
            return str(self._ref(token))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def _eval(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self._eval(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            intrinsic = _INTRINSICS.get(fn)
            if intrinsic is not None:
                return intrinsic(self, arg)
            assert not fn.startswith("Fn::"), f"renderer does not know {fn}"
        return {k: v for k, v in ((k, self._eval(v)) for k, v in node.items()) if v is not NO_VALUE}

    def props(self, name: str) -> dict[str, Any]:
        return self.resources[name]["Properties"]

    def statements(self) -> list[dict[str, Any]]:
        role = self.props("JobRole")
        assert len(role["Policies"]) == 1
        return role["Policies"][0]["PolicyDocument"]["Statement"]

    def key_arn(self) -> str:
        return self.params["KmsKeyArn"] or self._get_att("Key", "Arn")


def _fn_sub(r: Rendered, arg: Any) -> Any:
    if isinstance(arg, list):  # [text, {name: value}]: the names are substituted first
        text, names = arg
        for name, value in names.items():
            text = text.replace("${" + name + "}", str(r._eval(value)))
        return r._sub(text)
    return r._sub(arg)


# CloudFormation's intrinsic functions the template uses: name -> (renderer, its argument) -> value.
_INTRINSICS: dict[str, Callable[[Rendered, Any], Any]] = {
    "Ref": lambda r, arg: r._ref(arg),
    "Fn::Sub": _fn_sub,
    "Fn::Split": lambda r, arg: str(r._eval(arg[1])).split(arg[0]),
    "Fn::Select": lambda r, arg: r._eval(arg[1])[int(arg[0])],
    "Fn::Join": lambda r, arg: arg[0].join(str(x) for x in r._eval(arg[1])),
    "Fn::GetAtt": lambda r, arg: r._get_att(*arg),
    "Fn::If": lambda r, arg: r._eval(arg[1] if r.conditions[arg[0]] else arg[2]),
    "Fn::Equals": lambda r, arg: r._eval(arg[0]) == r._eval(arg[1]),
    "Fn::Not": lambda r, arg: not r._eval(arg[0]),
}


def render(*, partition: str = "aws", stack: str = STACK, **overrides: str) -> Rendered:
    """The template rendered with the test parameters, `overrides` replacing or adding any of them."""
    return Rendered(TEMPLATE, PARAMS | overrides, partition, stack)


def put_metric_alarm_request(props: dict[str, Any]) -> dict[str, Any]:
    """A rendered AWS::CloudWatch::Alarm as PutMetricAlarm takes it (numbers as numbers; text is what Fn::Sub gives)."""
    numbers = {"EvaluationPeriods": int, "DatapointsToAlarm": int, "Period": int, "Threshold": float}
    return {k: numbers[k](v) if k in numbers else v for k, v in props.items()}
