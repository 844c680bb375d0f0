"""Generate `fhir_model.json`, the FHIR type model the view compiler reads, from the HL7 StructureDefinitions.

Run once per FHIR release, from the core packages' folders (`npm pack hl7.fhir.r5.core@5.0.0` and
`hl7.fhir.r4.examples@4.0.1`, which ships the R4 core StructureDefinitions, each unpacked; only the generated file
is committed):

    python -m streaming.viewdef._gen_model --r4 /tmp/r4/package --r5 /tmp/r5/package

The model keeps, per version, the names of every primitive and resource type, and the elements of the resource
types in RESOURCES and of every type their elements reach. Each type maps
element names to a type spec: `Type`, `Type*` (a list), `a|b` for several types; a choice element is named
`value[x]`. Backbone elements are types named by their path (`Patient.contact`); a `contentReference` points at
one (`QuestionnaireResponse.item.item` is `QuestionnaireResponse.item*`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The resource types the model covers: the conformance suite's, and the ones the bronze views read.
RESOURCES = (
    "ClaimResponse", "Condition", "DetectedIssue", "Device", "Encounter", "ImagingStudy", "Location", "Measure",
    "Observation", "Organization", "Patient", "Practitioner", "PractitionerRole", "QuestionnaireResponse", "Task",
)  # fmt: skip

OUT = Path(__file__).with_name("fhir_model.json")

_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
# FHIRPath system types some elements (`id`, `url`, primitive values) are declared with, as FHIR types.
_SYSTEM = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal", "Date": "date",
           "DateTime": "dateTime", "Time": "time"}  # fmt: skip


def _definitions(folder: Path) -> Iterator[dict[str, Any]]:
    """The base StructureDefinitions (resources, datatypes, primitives) of a core package folder."""
    for path in sorted(folder.glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text(encoding="utf-8"))
        if sd.get("resourceType") != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        if sd.get("kind") in ("resource", "complex-type", "primitive-type") and not sd.get("abstract"):
            yield sd


def _type_code(entry: dict[str, Any]) -> str:
    """An element type's FHIR name; FHIRPath system types (`http://hl7.org/fhirpath/System.String`) as FHIR's."""
    code = str(entry["code"])
    if not code.startswith("http://hl7.org/fhirpath/System."):
        return code
    for ext in entry.get("extension", []):
        if ext.get("url") == _FHIR_TYPE_EXT:
            return str(ext.get("valueUrl") or ext.get("valueUri"))
    return str(_SYSTEM[code.rsplit(".", 1)[1]])


def _elements(sd: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One StructureDefinition's types: its own and its backbone elements', each element name -> type spec."""
    root = sd["type"]
    elements = [e for e in sd["snapshot"]["element"] if e.get("max") != "0"]
    parents = {e["path"].rsplit(".", 1)[0] for e in elements if "." in e["path"]}
    types: dict[str, dict[str, str]] = {root: {}}
    for element in elements:
        path = element["path"]
        if "." not in path:
            continue
        parent, name = path.rsplit(".", 1)
        if "contentReference" in element:
            codes = [element["contentReference"].split("#", 1)[1]]
        elif path in parents:  # a backbone element: its children follow it in the snapshot
            codes = [path]
        else:
            codes = [_type_code(t) for t in element.get("type", [])]
        if codes:
            many = "*" if element.get("max") != "1" else ""
            types.setdefault(parent, {})[name] = "|".join(dict.fromkeys(codes)) + many
    return types


def build(folder: Path) -> dict[str, Any]:
    """The model of one FHIR version: primitive and resource type names, and the types RESOURCES reach."""
    primitives: list[str] = []
    resources: list[str] = []
    all_types: dict[str, dict[str, str]] = {}
    for sd in _definitions(folder):
        if sd["kind"] == "primitive-type":
            primitives.append(sd["type"])
        else:
            resources += [sd["type"]] if sd["kind"] == "resource" else []
            all_types.update(_elements(sd))
    wanted: dict[str, dict[str, str]] = {}
    todo = list(RESOURCES)
    while todo:
        name = todo.pop()
        if name in wanted or name not in all_types:
            continue
        wanted[name] = all_types[name]
        for spec in wanted[name].values():
            todo += [code for code in spec.rstrip("*").split("|") if code in all_types]
    missing = [name for name in RESOURCES if name not in wanted]
    if missing:
        raise SystemExit(f"{folder}: no StructureDefinition for {', '.join(missing)}")
    return {"primitives": sorted(primitives), "resources": sorted(resources), "types": dict(sorted(wanted.items()))}


def main(argv: list[str] | None = None) -> None:
    """Write the model file from the R4 and R5 package folders named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--r4", type=Path, required=True, metavar="DIR", help="R4 core package folder")
    parser.add_argument("--r5", type=Path, required=True, metavar="DIR", help="R5 core package folder")
    parser.add_argument("--out", type=Path, default=OUT, metavar="FILE", help="model file (default: %(default)s)")
    args = parser.parse_args(argv)
    model = {"R4": build(args.r4), "R5": build(args.r5)}
    # One line per type: compact, and a regeneration diffs type by type.
    versions = []
    for version, part in model.items():
        types = ",\n".join(f"{json.dumps(t)}: {json.dumps(e, separators=(',', ':'))}" for t, e in part["types"].items())
        names = f'"primitives": {json.dumps(part["primitives"])},\n"resources": {json.dumps(part["resources"])}'
        versions.append(f'"{version}": {{{names},\n"types": {{\n{types}\n}}}}')
    text = "{\n" + ",\n".join(versions) + "\n}\n"
    args.out.write_text(text, encoding="utf-8")
    counts = ", ".join(f"{v} {len(m['types'])} types" for v, m in model.items())
    print(f"wrote {args.out} ({len(text):,} bytes; {counts})")


if __name__ == "__main__":
    main()
