"""Why a ViewDefinition cannot be compiled: one exception class per kind of problem, all ViewError."""

from __future__ import annotations


class ViewError(ValueError):
    """A ViewDefinition the compiler refuses; the message names the part of the view, never record content."""


class InvalidView(ViewError):
    """The ViewDefinition's structure breaks the specification (no resource, a forEach that is not text, ...)."""


class FhirPathSyntaxError(ViewError):
    """A FHIRPath expression does not parse."""


class UnknownConstant(ViewError):
    """`%name` names no constant of the view (nor `%rowIndex`/`%resource`)."""


class NotBoolean(ViewError):
    """A `where` path (or a boolean operator's operand) is not boolean."""


class UnionMismatch(ViewError):
    """The branches of a unionAll give different columns (names, order or types)."""


class UnknownElement(ViewError):
    """A path names an element the resource's type model does not have."""


class FhirTypeError(ViewError):
    """An expression applies to a value of the wrong type (a comparison of text with a number, ...)."""


class Unsupported(ViewError):
    """Valid FHIRPath or ViewDefinition that this compiler does not translate (named in the message)."""
