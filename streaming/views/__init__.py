"""SQL on FHIR v2 ViewDefinitions compiled to Spark SQL (`compile_view`), and the conformance suite's runner."""

from __future__ import annotations

from streaming.views.compiler import DEFAULT_MAX_DEPTH, CompiledView, ViewColumn, compile_view
from streaming.views.errors import (
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
