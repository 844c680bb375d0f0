"""A rendered CloudWatch alarm evaluated over made-up per-period values, to test what would page and what would not.

Not a test module: test_template_policy.py imports from here. It models the parts of CloudWatch the template uses:
one metric or a metric-math expression of `IF`, `FILL(id, 0 | REPEAT)`, `AND`, `OR`, comparisons and arithmetic;
a period with no data point is missing, and an expression over a missing value is missing; then the last
EvaluationPeriods values against the threshold, DatapointsToAlarm of them, TreatMissingData for the missing ones.
It checks the thresholds and expressions mean what the template says; CloudWatch itself is not run here.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Series = Sequence[float | None]  # one value per period, oldest first; None: no data point in that period

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


def _filled(values: Series, how: str) -> list[float | None]:
    if how == "REPEAT":  # each gap takes the last value before it (a gap before any value stays a gap)
        out: list[float | None] = []
        last = None
        for v in values:
            last = v if v is not None else last
            out.append(last)
        return out
    return [float(how) if v is None else v for v in values]


def _if(condition: Any, then: float, otherwise: float) -> float:
    return then if condition else otherwise


def expression_values(alarm: Mapping[str, Any], data: Mapping[str, Series]) -> list[float | None]:
    """The alarm's returned series: its metric's values, or its expression over its metrics' values.

    `data` maps a metric name (with `:<Reason>` appended when the metric has a Reason dimension) to its values.
    """
    if "Metrics" not in alarm:
        return list(data.get(_key(alarm["MetricName"], alarm["Dimensions"]), []))
    by_id = {
        q["Id"]: list(
            data.get(_key(q["MetricStat"]["Metric"]["MetricName"], q["MetricStat"]["Metric"]["Dimensions"]), [])
        )
        for q in alarm["Metrics"]
        if "MetricStat" in q
    }
    (returned,) = [q for q in alarm["Metrics"] if q.get("ReturnData")]
    text = returned["Expression"]
    length = max((len(v) for v in by_id.values()), default=0)
    for ident in by_id:
        by_id[ident] += [None] * (length - len(by_id[ident]))
    # FILL(x, how) becomes a series of its own, so what is left is evaluated one period at a time.
    filled: dict[str, list[float | None]] = {}

    def fill(match: re.Match[str]) -> str:
        name = f"_fill{len(filled)}"
        filled[name] = _filled(by_id[match.group(1)], match.group(2).strip())
        return name

    text = re.sub(r"FILL\((\w+),\s*(REPEAT|[-\d.]+)\)", fill, text)
    text = re.sub(r"\bIF\(", "_if(", text).replace(" AND ", " and ").replace(" OR ", " or ")
    columns = {**by_id, **filled}
    names = [n for n in columns if re.search(rf"\b{n}\b", text)]
    code = compile(text, "<expression>", "eval")
    out: list[float | None] = []
    for i in range(length):
        row = {n: columns[n][i] for n in names}
        out.append(None if any(v is None for v in row.values()) else float(eval(code, {"_if": _if}, row)))
    return out


def _key(metric: str, dimensions: Sequence[Mapping[str, str]]) -> str:
    reason = [d["Value"] for d in dimensions if d["Name"] == "Reason"]
    return f"{metric}:{reason[0]}" if reason else metric


def state(alarm: Mapping[str, Any], data: Mapping[str, Series]) -> str:
    """ALARM or OK after the last period of `data` (INSUFFICIENT_DATA when every evaluated value is ignored)."""
    values = expression_values(alarm, data)
    periods, needed = int(alarm["EvaluationPeriods"]), int(alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]))
    window = values[-periods:]
    window = [None] * (periods - len(window)) + window
    missing = alarm.get("TreatMissingData", "missing")
    compare, threshold = _COMPARE[alarm["ComparisonOperator"]], float(alarm["Threshold"])
    breaching = 0
    present = 0
    for value in window:
        if value is None:
            if missing == "breaching":
                breaching += 1
                present += 1
            elif missing == "notBreaching":
                present += 1
            continue
        present += 1
        breaching += compare(value, threshold)
    if present == 0:
        return "INSUFFICIENT_DATA"
    return "ALARM" if breaching >= needed else "OK"
