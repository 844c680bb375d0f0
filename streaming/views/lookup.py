"""Find the view a `views.run` entry names: a shipped view by name, else a ViewDefinition JSON file by path.

The shipped views (`streaming/viewdef/shipped.py`, when present) plug in through one function,
`shipped_view(name, fhir_version)`, returning the ViewDefinition (parsed JSON) or a compiled view, and raising
KeyError or the module's `UnknownView` (or returning None) for a name it does not ship. When the module also has
`definition(name, fhir_version)` (the parsed JSON), a compiled view's definition is taken from it: the job reads its
key, `where` and partition from the definition. Without that module no name is shipped here: `encounter` is the
bronze table's own mapping and never looked up.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.config import ConfigError, view_entry_is_file
from streaming.viewdef.compiler import CompiledView, compile_view
from streaming.viewdef.errors import ViewError

# What a shipped-views module provides: the definition (or the compiled view) of a name, None/KeyError if unknown.
ShippedLookup = Callable[[str, str], Mapping[str, Any] | CompiledView | None]


@dataclass(frozen=True)
class FoundView:
    """A view to run: compiled, with its definition when it is known (a shipped module may give only the former)."""

    view: CompiledView
    definition: Mapping[str, Any] | None
    origin: str  # the `views.run` entry it came from, for messages


def _shipped_module() -> Any:
    """`streaming.viewdef.shipped`, when that module exists; None otherwise."""
    try:
        return importlib.import_module("streaming.viewdef.shipped")
    except ModuleNotFoundError as exc:
        if exc.name != "streaming.viewdef.shipped":
            raise
        return None


def _shipped(entry: str, fhir_version: str, lookup: ShippedLookup) -> Mapping[str, Any] | CompiledView | None:
    """What the shipped lookup gives for `entry`; None for a name it does not ship."""
    unknown: type[Exception] = getattr(_shipped_module(), "UnknownView", KeyError)
    try:
        return lookup(entry, fhir_version)
    except (KeyError, unknown):
        return None
    except ViewError as exc:  # a shipped view that does not compile: a bug to name, not a missing name
        raise ConfigError(f"views.run: shipped view {entry!r}: {exc}") from None


def _shipped_definition(entry: str, fhir_version: str) -> Mapping[str, Any] | None:
    """The shipped view's definition, when the shipped module hands it out (`definition(name, fhir_version)`)."""
    definition = getattr(_shipped_module(), "definition", None)
    if definition is None:
        return None
    found: Mapping[str, Any] = definition(entry, fhir_version)
    return found


def find_view(entry: str, fhir_version: str, shipped: ShippedLookup | None = None) -> FoundView:
    """The view `entry` names, compiled for `fhir_version`: a shipped name first, then a file (else ConfigError)."""
    if not view_entry_is_file(entry):
        lookup = shipped or getattr(_shipped_module(), "shipped_view", None)
        found = None if lookup is None else _shipped(entry, fhir_version, lookup)
        if isinstance(found, CompiledView):
            definition = None if shipped is not None else _shipped_definition(entry, fhir_version)
            return FoundView(found, definition, entry)
        if found is not None:
            return FoundView(_compile(found, fhir_version, entry), found, entry)
        if not Path(entry).is_file():
            raise ConfigError(f"views.run: {entry!r} is no shipped view and no ViewDefinition file")
    definition = _read(Path(entry))
    return FoundView(_compile(definition, fhir_version, entry), definition, entry)


def _read(path: Path) -> Mapping[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"views.run: cannot read {path} ({type(exc).__name__})") from None
    except ValueError as exc:
        raise ConfigError(f"views.run: {path} is not JSON ({exc})") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"views.run: {path} is not a ViewDefinition (a JSON object)")
    return value


def _compile(definition: Mapping[str, Any], fhir_version: str, entry: str) -> CompiledView:
    try:
        return compile_view(definition, fhir_version=fhir_version)
    except ViewError as exc:
        raise ConfigError(f"views.run: {entry}: {exc}") from None
