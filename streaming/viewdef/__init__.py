"""SQL on FHIR v2 ViewDefinitions: parsed, typed against the FHIR model, compiled to Spark SQL; the shipped ones.

    view = compile_view(definition, fhir_version="R4")  # a ViewError subclass when the view cannot compile
    rows = view.apply(records, "sourcename")  # resource_json (+ ref_map) in; sourcename and the view's columns out

`view.read_schema` (what from_json reads) and `view.rows_sql` (the rows as `array<struct>` over the parsed
resource `_r` and `ref_map`) are there for a caller that builds its own projection.
"""

from __future__ import annotations

from streaming.viewdef.compiler import DEFAULT_MAX_DEPTH, CompiledView, ViewColumn, compile_view
from streaming.viewdef.errors import (
    FhirPathSyntaxError,
    FhirTypeError,
    InvalidView,
    NotBoolean,
    UnionMismatch,
    UnknownConstant,
    UnknownElement,
    Unsupported,
    ViewError,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "CompiledView",
    "FhirPathSyntaxError",
    "FhirTypeError",
    "InvalidView",
    "NotBoolean",
    "UnionMismatch",
    "UnknownConstant",
    "UnknownElement",
    "Unsupported",
    "ViewColumn",
    "ViewError",
    "compile_view",
]
