"""The ViewDefinitions shipped with the package (`shipped/<name>.json`), by name and FHIR version.

    view = shipped_view("patient", "R4")  # a CompiledView; UnknownView names the known ones

A view whose paths differ in R5 has a variant `shipped/<name>.r5.json`; every other view serves R4 and R5 alike
(docs/views.md says how to add one).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from streaming.viewdef.compiler import CompiledView, compile_view
from streaming.viewdef.errors import ViewError
from streaming.viewdef.model import VERSIONS

# The shipped views, in the order the tables are documented; each lands in its own table `bronze_<name>`.
SHIPPED_VIEWS: tuple[str, ...] = (
    "encounter",  # bronze_encounter's values; the job's typed steps (streaming/fhir/mapping.py) make its table
    "patient",
    "practitioner",
    "practitioner_role",
    "organization",
    "location",
    "condition",
    "observation",
    "encounter_reference",  # what the ready queries join on that bronze_encounter does not keep (location, provider)
)


class UnknownView(ViewError):
    """A name that is no shipped view (the message lists the shipped ones)."""


def _file(name: str, fhir_version: str) -> str:
    """The file name of the view's definition for `fhir_version`: its R5 variant when there is one."""
    folder = resources.files("streaming.viewdef") / "shipped"
    variant = f"{name}.{fhir_version.lower()}.json"
    return variant if (folder / variant).is_file() else f"{name}.json"


def definition(name: str, fhir_version: str = "R4") -> dict[str, Any]:
    """The shipped ViewDefinition `name` for `fhir_version`, as parsed JSON."""
    if name not in SHIPPED_VIEWS:
        raise UnknownView(f"no shipped view {name!r} (shipped: {', '.join(SHIPPED_VIEWS)})")
    if fhir_version not in VERSIONS:
        raise UnknownView(f"unknown FHIR version {fhir_version!r} (one of {', '.join(VERSIONS)})")
    text = (resources.files("streaming.viewdef") / "shipped" / _file(name, fhir_version)).read_text(encoding="utf-8")
    view: dict[str, Any] = json.loads(text)
    return view


@functools.cache
def shipped_view(name: str, fhir_version: str = "R4") -> CompiledView:
    """The shipped view `name` compiled for FHIR `fhir_version` (R4 or R5); UnknownView for any other name."""
    return compile_view(definition(name, fhir_version), fhir_version=fhir_version)


def has_variant(name: str, fhir_version: str) -> bool:
    """Whether `name` has its own definition for `fhir_version` (else it shares the R4 one)."""
    return _file(name, fhir_version) != f"{name}.json"


def _column_specs(view: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """A view's column definitions in order, each with its path as a reader needs it: a column of a nested select
    over `forEachOrNull` shows that path too."""
    specs = []
    for select in view["select"]:
        over = select.get("forEachOrNull")
        for column in select.get("column", []):
            path = f"`{column['path']}`" + (f" in `forEachOrNull: {over}`" if over else "")
            specs.append((column, path.replace("|", "\\|")))
    return specs


def readme_table() -> str:
    """The shipped views' columns for docs/views.md: per view its resource, then each column's type, path, meaning."""
    parts = []
    for name in SHIPPED_VIEWS:
        r4, r5 = definition(name, "R4"), definition(name, "R5")
        view = shipped_view(name, "R4")
        paths_r5 = {spec["name"]: path for spec, path in _column_specs(r5)}
        variant = f" (R5: `shipped/{name}.r5.json`)" if has_variant(name, "R5") else " (R4 and R5)"
        lines = [
            f"**`{name}`** → `bronze_{name}`: {r4['title']}. One row per {view.resource}; "
            f"`streaming/viewdef/shipped/{name}.json`{variant}.",
            "",
            "| column | type | FHIRPath | meaning |",
            "|---|---|---|---|",
        ]
        for column, (spec, path) in zip(view.columns, _column_specs(r4), strict=True):
            if paths_r5[column.name] != path:
                path = f"R4 {path}; R5 {paths_r5[column.name]}"
            meaning = spec["description"].replace("|", "\\|")
            lines.append(f"| `{column.name}` | {column.spark_type} | {path} | {meaning} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
