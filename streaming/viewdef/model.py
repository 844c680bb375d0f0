"""The FHIR type model views are compiled against: elements, their types and cardinality, per FHIR version.

Generated from the HL7 StructureDefinitions by `_gen_model.py` into `fhir_model.json` (committed data); this module
only reads it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from streaming.viewdef.errors import InvalidView

MODEL_FILE = Path(__file__).with_name("fhir_model.json")
VERSIONS = ("R4", "R5")

# Primitive types as Spark reads them from JSON (`from_json`) and as they are handled once read: text stays text
# (dates too: FHIR allows partial dates no Spark type holds), numbers are exact decimals.
DECIMAL = "decimal(38,18)"
_SPARK_TYPES = {
    "boolean": "boolean",
    "integer": "int",
    "positiveInt": "int",
    "unsignedInt": "int",
    "integer64": "bigint",
    "decimal": DECIMAL,
}
# FHIRPath's comparable families: a value compares with (and converts to) values of its own family.
_FAMILIES = {
    "boolean": "boolean",
    "integer": "number",
    "positiveInt": "number",
    "unsignedInt": "number",
    "integer64": "number",
    "decimal": "number",
    "date": "date",
    "dateTime": "date",
    "instant": "date",
    "time": "time",
}


@dataclass(frozen=True)
class Element:
    """One element of a type: its JSON name stem, its type codes (several for a choice `[x]`), and if a list."""

    name: str
    types: tuple[str, ...]
    many: bool
    choice: bool


class TypeModel:
    """The elements of every type the model covers, for one FHIR version."""

    def __init__(
        self, version: str, primitives: list[str], resources: list[str], types: dict[str, dict[str, str]]
    ) -> None:
        self.version = version
        self.primitives = frozenset(primitives)
        self.resources = frozenset(resources)  # every resource type of the version, modelled or not
        self._types = types

    def has_type(self, name: str) -> bool:
        """Whether the model holds the elements of `name`."""
        return name in self._types

    def is_resource(self, name: str) -> bool:
        """A resource type whose elements the model holds (a view may read it)."""
        return name in self.resources and name in self._types

    def element(self, type_name: str, name: str) -> Element | None:
        """The element `name` of `type_name`; None when the type has no such element or is not modelled."""
        elements = self._types.get(type_name)
        if elements is None:
            return None
        spec = elements.get(name)
        choice = spec is None
        if choice:
            spec = elements.get(f"{name}[x]")
            if spec is None:
                return None
        assert spec is not None  # found under its own name or as a choice
        many = spec.endswith("*")
        return Element(name, tuple(spec.rstrip("*").split("|")), many, choice)


def spark_type(fhir_type: str) -> str:
    """The Spark SQL type a FHIR primitive is held in (`string` for text, dates and unknown names)."""
    return _SPARK_TYPES.get(fhir_type, "string")


def read_type(fhir_type: str) -> str:
    """The Spark type `from_json` reads a primitive as: its own, except integer64, which JSON writes as text."""
    return "string" if fhir_type == "integer64" else spark_type(fhir_type)


def family(fhir_type: str) -> str:
    """The comparison family of a primitive type: boolean, number, date, time or text."""
    return _FAMILIES.get(fhir_type, "text")


@functools.cache
def load(version: str) -> TypeModel:
    """The type model of FHIR `version` (R4 or R5), read once per process."""
    if version not in VERSIONS:
        raise InvalidView(f"unknown FHIR version {version!r} (one of {', '.join(VERSIONS)})")
    data = json.loads(MODEL_FILE.read_text(encoding="utf-8"))[version]
    return TypeModel(version, data["primitives"], data["resources"], data["types"])
