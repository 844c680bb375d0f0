"""The ready queries (streaming/ops/ready_queries.py) as Athena named queries in deploy/template.json: one source.

    python deploy/named_queries.py          # rewrite the template's NamedQuery resources from the ready queries

tests/test_template_policy.py fails when the template's copies differ from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "template.json"
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: streaming/ is beside deploy/

from streaming.ops.ready_queries import QUERIES, Query  # noqa: E402

WRITTEN_FOR = "bronze."  # the database the queries name; the stack's is the DatabaseName parameter
# The stack runs the Encounter view only: the queries over other views' tables are not named queries there (they
# would also push the template past CloudFormation's 51,200-byte body).
DEPLOYED = tuple(q for q in QUERIES if not q.views)


def logical_id(query: Query) -> str:
    """`durations_by_type` -> `DurationsByTypeQuery`."""
    return "".join(part.capitalize() for part in query.name.split("_")) + "Query"


def resource(query: Query) -> dict[str, Any]:
    """One AWS::Athena::NamedQuery in the stack's workgroup, naming the stack's database."""
    # Fn::Sub would read a literal ${ in the SQL as a reference: none may be there.
    assert "${" not in query.sql, query.name
    return {
        "Type": "AWS::Athena::NamedQuery",
        "Properties": {
            "Name": query.name,
            "Description": query.description,
            "Database": {"Ref": "DatabaseName"},
            "WorkGroup": {"Ref": "AthenaWorkGroup"},
            "QueryString": {"Fn::Sub": query.sql.replace(WRITTEN_FOR, "${DatabaseName}.")},
        },
    }


def with_named_queries(template: dict[str, Any]) -> dict[str, Any]:
    """The template with one NamedQuery per ready query (others removed), placed after the workgroup."""
    resources = {k: v for k, v in template["Resources"].items() if v["Type"] != "AWS::Athena::NamedQuery"}
    ordered: dict[str, Any] = {}
    for name, body in resources.items():
        ordered[name] = body
        if name == "AthenaWorkGroup":
            ordered.update({logical_id(q): resource(q) for q in DEPLOYED})
    return {**template, "Resources": ordered}


if __name__ == "__main__":
    current = json.loads(TEMPLATE.read_text())
    TEMPLATE.write_text(json.dumps(with_named_queries(current), indent=2) + "\n")
