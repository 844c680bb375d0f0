"""ViewDefinition (SQL on FHIR v2) -> one Spark SQL expression per resource: its rows as `array<struct<columns>>`.

The design Pathling uses, which fits `foreachBatch`: every select, forEach, unionAll and repeat becomes higher-order
functions (`transform`, `filter`, `flatten`, `concat`) over the resource parsed by `from_json`, and one `inline`
turns the array into rows. No joins, no shuffle, no state: a view is a projection of each resource alone.

FHIRPath values are typed at compile time from the type model (`model.py`): a value is either one item (a nullable
SQL value; null is the empty collection) or a collection (an SQL array; null or [] is empty). The `from_json`
schema holds only the elements the view reads (`_schema.py`).

Static checks raise a ViewError subclass (`errors.py`). What only the data can tell, a column that is not a
collection meeting several values or a repeat deeper than `max_depth`, fails the Spark job with `raise_error`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streaming.viewdef import fhirpath as fp
from streaming.viewdef import model
from streaming.viewdef._schema import ReadNode, read_schema
from streaming.viewdef.errors import (
    FhirTypeError,
    InvalidView,
    NotBoolean,
    UnionMismatch,
    UnknownConstant,
    UnknownElement,
    Unsupported,
    ViewError,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Levels below a repeat's first one that are read; a resource nesting deeper fails the job (never silently cut).
DEFAULT_MAX_DEPTH = 6
# The columns `rows_sql` reads: the parsed resource and the Bundle's reference map (reference -> `Type/id`).
RESOURCE = "_r"
REF_MAP = "ref_map"

_COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# What a select may hold (ViewDefinition.select): anything else is a typo the spec does not allow.
_SELECT_KEYS = {"column", "select", "unionAll", "forEach", "forEachOrNull", "repeat", "id", "extension"}
# `Type/id`, relative or absolute, optionally with a version: group 1 the type, group 2 the id.
_REFERENCE = r"^(?:.*/)?([A-Za-z]+)/([A-Za-z0-9.-]{1,64})(?:/_history/[A-Za-z0-9.-]{1,64})?$"
_SYSTEM_TYPES = {
    "System.String": "string",
    "System.Boolean": "boolean",
    "System.Integer": "integer",
    "System.Decimal": "decimal",
    "System.Date": "date",
    "System.DateTime": "dateTime",
    "System.Time": "time",
}
_ORDERED = {"number", "text", "date", "time"}
_NUMBERS = {"integer", "positiveInt", "unsignedInt", "integer64", "decimal"}


@dataclass(frozen=True)
class ViewColumn:
    """One output column: its name, FHIR type, Spark type (`array<...>` for a collection) and if a collection."""

    name: str
    type: str
    spark_type: str
    collection: bool


@dataclass(frozen=True)
class CompiledView:
    """A ViewDefinition as Spark SQL: `rows_sql` over the resource parsed with `read_schema`.

    `apply` runs it over a DataFrame of resources (`resource_json`, optionally the Bundle's `ref_map`).
    """

    name: str | None
    resource: str
    fhir_version: str
    columns: tuple[ViewColumn, ...]
    read_schema: str
    rows_sql: str
    # Exactly one row per resource of its type, known from the view's shape (columns, nested selects and
    # forEachOrNull over single values; no forEach, unionAll, repeat or view `where`).
    one_row: bool = False
    resource_column: str = RESOURCE  # the column `rows_sql` reads the parsed resource from
    # For a one-row view whose row needs no loop: each column's SQL, over `bindings` (name, SQL: each may read the
    # ones before it) projected as columns first. A caller projecting one row per resource (bronze_encounter's
    # mapping) uses these instead of `rows_sql`: no array, no lambda but the view's own (filter, where); it checks
    # the resource type itself.
    row_sql: tuple[str, ...] | None = None
    bindings: tuple[tuple[str, str], ...] = ()

    def parsed(self, json_column: str = "resource_json") -> Column:
        """The resource parsed into what the view reads (a struct; null when the text is not JSON)."""
        from pyspark.sql import functions as F

        return F.from_json(F.col(json_column), self.read_schema)

    def row_columns(self) -> list[Column]:
        """The one-row form's columns, named as the view's, over its `bindings` (projected before, in order)."""
        from pyspark.sql import functions as F

        if self.row_sql is None:
            raise ValueError(f"view {self.name!r} has no one-row form")
        return [F.expr(sql).alias(c.name) for c, sql in zip(self.columns, self.row_sql, strict=True)]

    def apply(self, resources: DataFrame, *keep: str, json_column: str = "resource_json") -> DataFrame:
        """The view's rows: `keep` columns of each resource's row, then the view's columns.

        Rows of other resource types give nothing. A `ref_map` column (map reference -> `Type/id`, see
        records.py) resolves Bundle-local references for getReferenceKey(); without it references are taken as
        written.
        """
        from pyspark.sql import functions as F

        refs = F.col(REF_MAP) if REF_MAP in resources.columns else F.create_map().cast("map<string,string>")
        parsed = resources.select(*keep, self.parsed(json_column).alias(self.resource_column), refs.alias(REF_MAP))
        return parsed.select(*keep, F.inline(F.expr(self.rows_sql))).select(*keep, *(c.name for c in self.columns))


# -- SQL text helpers ----------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """A Spark SQL string literal (backslash escapes are on by default)."""
    out = []
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ord(ch) < 32:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _field(sql: str, name: str) -> str:
    """A struct field of `sql` (parenthesised unless `sql` is a plain name or field chain)."""
    return f"{sql}.`{name}`" if _simple(sql) else f"({sql}).`{name}`"


def _simple(sql: str) -> bool:
    """A column, lambda variable or field chain: cheap to repeat in the generated text."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.`[A-Za-z0-9_]+`)*", sql) is not None


def _cap(fhir_type: str) -> str:
    """A type as a choice element's suffix: `dateTime` -> `valueDateTime`."""
    return fhir_type[:1].upper() + fhir_type[1:]


# -- values --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    """A compiled FHIRPath value: SQL, FHIR type ('' for the empty collection), collection or not, and where in
    the resource it was read (None for computed values)."""

    sql: str
    type: str
    many: bool
    node: ReadNode | None = None
    first: str | None = None  # SQL of its first item when cheaper than `get(sql, 0)` (a union of two items)


@dataclass(frozen=True)
class _Choice:
    """A choice element (`value[x]`) before ofType() picks one of its types: its parent and element."""

    parent: _Value
    element: model.Element


_EMPTY = _Value("NULL", "", False)


@dataclass(frozen=True)
class _Scope:
    """What `$this` and `%rowIndex` are where an expression is evaluated."""

    this: _Value | _Choice
    row_index: str


@dataclass
class _Rows:
    """A select's rows: an `array<struct>` SQL expression, or one row given by its column values (`row`)."""

    columns: list[ViewColumn]
    sql: str = ""
    row: list[str] | None = None
    single: bool = False  # `sql` always gives exactly one row
    # Names `row` reads, each bound to its SQL in order (a forEachOrNull over one value binds its item): a caller
    # may project them as columns first; `array_sql` binds them through one-item loops.
    bindings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def one(self) -> bool:
        """Exactly one row, whatever the data."""
        return self.row is not None or self.single

    def array_sql(self) -> str:
        if self.row is None:
            return self.sql
        sql = f"array({_struct(self.columns, self.row)})"
        for name, value in reversed(self.bindings):
            sql = f"flatten(transform(array({value}), {name} -> {sql}))"
        return sql


def _each(items: str, item: str, position: str, rows: _Rows) -> str:
    """`rows` (over `item`, `position`) for every item, concatenated."""
    if rows.row is not None and not rows.bindings:  # one row per item: no arrays to flatten
        return f"transform({items}, ({item}, {position}) -> {_struct(rows.columns, rows.row)})"
    return f"flatten(transform({items}, ({item}, {position}) -> {rows.array_sql()}))"


def _part(sql: str, pattern: str, default: str) -> str:
    """The first group of `pattern` in `sql`, or `default` when it is not there."""
    return f"coalesce(nullif(regexp_extract({sql}, {_text(pattern)}, 1), ''), {_text(default)})"


def _time_boundary(time: str, high: bool) -> str:
    """hh[:mm[:ss[.fff]]] filled to milliseconds with the lowest (or highest) values."""
    hour = _part(time, "^([0-9]{2})", "23" if high else "00")
    minute = _part(time, "^[0-9]{2}:([0-9]{2})", "59" if high else "00")
    second = _part(time, "^[0-9]{2}:[0-9]{2}:([0-9]{2})", "59" if high else "00")
    fraction = f"rpad(regexp_extract({time}, {_text('[.]([0-9]+)')}, 1), 3, {_text('9' if high else '0')})"
    return f"concat({hour}, ':', {minute}, ':', {second}, '.', {fraction})"


def _date_boundary(value: str, high: bool, *, with_time: bool) -> str:
    """A partial date (or date-time) filled with the lowest (or highest) month, day, time and time zone."""
    year = f"regexp_extract({value}, {_text('^([0-9]{4})')}, 1)"
    month = _part(value, "^[0-9]{4}-([0-9]{2})", "12" if high else "01")
    day = _part(value, "^[0-9]{4}-[0-9]{2}-([0-9]{2})", "01")
    if high:
        last = f"lpad(day(last_day(make_date(int({year}), int({month}), 1))), 2, '0')"
        day = f"coalesce(nullif(regexp_extract({value}, {_text('^[0-9]{4}-[0-9]{2}-([0-9]{2})')}, 1), ''), {last})"
    date = f"concat({year}, '-', {month}, '-', {day})"
    if with_time:
        time = _time_boundary(f"regexp_extract({value}, {_text('T([0-9:.]+)')}, 1)", high)
        zone = _part(value, "(Z|[+-][0-9]{2}:[0-9]{2})$", "-12:00" if high else "+14:00")
        date = f"concat({date}, 'T', {time}, {zone})"
    return f"CASE WHEN {year} <> '' THEN {date} END"


def _struct(columns: Sequence[ViewColumn], values: Sequence[str]) -> str:
    """One row: the columns' values as a named struct."""
    if not columns:
        return "named_struct('_', true)"  # Spark has no empty struct; a row without columns still counts
    return "named_struct(" + ", ".join(f"{_text(c.name)}, {v}" for c, v in zip(columns, values, strict=True)) + ")"


@dataclass
class _Compiler:
    """Compiles one ViewDefinition; holds what the whole view shares (model, constants, read tree, names)."""

    model: model.TypeModel
    resource: str
    view_name: str
    max_depth: int
    resource_column: str = RESOURCE
    elements: Mapping[str, str] | None = None  # top-level element -> the column holding it (see compile_view)
    constants: dict[str, _Value] = field(default_factory=dict)
    root: ReadNode = field(init=False)
    depths: dict[int, int] = field(default_factory=dict)
    _names: int = 0

    def __post_init__(self) -> None:
        self.root = ReadNode(self.resource, False)

    def var(self) -> str:
        """A lambda variable name no other in the view uses (nested lambdas must not shadow each other); with the
        resource column in it unless that is the default, so two views' bindings can be columns side by side."""
        self._names += 1
        prefix = "" if self.resource_column == RESOURCE else self.resource_column
        return f"{prefix}_v{self._names}x"  # the `x` keeps `_v1x` from being a prefix of `_v12x`

    def where(self, what: str) -> str:
        """A message prefixed with the view's name, so an error says which view."""
        return f"view {self.view_name!r}: {what}"

    # -- FHIRPath ----------------------------------------------------------------------------------------------

    def path(self, text: Any, scope: _Scope, what: str) -> _Value | _Choice:
        """A view's FHIRPath text compiled in `scope`; errors name the view and the path's place in it."""
        if not isinstance(text, str):
            raise InvalidView(self.where(f"{what} must be a FHIRPath text, got {type(text).__name__}"))
        try:
            return self.expr(fp.parse(text), scope)
        except ViewError as exc:
            raise type(exc)(self.where(f"{what} {text!r}: {exc}")) from None

    def expr(self, node: fp.Node, scope: _Scope) -> _Value | _Choice:
        """One syntax-tree node compiled in `scope`."""
        if isinstance(node, fp.Literal):
            return self.literal(node)
        if isinstance(node, fp.Member):
            return self.member_expr(node, scope)
        if isinstance(node, fp.Call):
            base = scope.this if node.base is None else self.expr(node.base, scope)
            return self.call(base, node, scope)
        if isinstance(node, fp.Index):
            return self.index(self.value(self.expr(node.base, scope)), self.value(self.expr(node.index, scope)))
        if isinstance(node, fp.Variable):
            return self.variable(node.name, scope)
        if isinstance(node, fp.Special):
            if node.name == "this":
                return scope.this
            raise Unsupported(f"${node.name} is not supported")
        if isinstance(node, fp.Unary):
            return self.unary(node, scope)
        if isinstance(node, fp.Binary):
            return self.binary(node, scope)
        raise Unsupported(f"{type(node).__name__} is not supported")

    def member_expr(self, node: fp.Member, scope: _Scope) -> _Value | _Choice:
        """`base.name`, or `name` on `$this`; the resource's type name starting a path stands for the resource."""
        base = scope.this if node.base is None else self.expr(node.base, scope)
        at_root = node.base is None and isinstance(base, _Value) and base.sql == self.resource_column
        if at_root and node.name == self.resource:
            return base  # `Patient.name`: the type name starts the path
        return self.member(base, node.name)

    def unary(self, node: fp.Unary, scope: _Scope) -> _Value:
        """Unary `+` / `-` of a number."""
        operand = self.single(self.value(self.expr(node.operand, scope)), f"operand of unary {node.op}")
        if operand.type and operand.type not in _NUMBERS:
            raise FhirTypeError(f"unary {node.op} needs a number, got {operand.type}")
        return operand if node.op == "+" or not operand.type else _Value(f"(- {operand.sql})", operand.type, False)

    def value(self, value: _Value | _Choice) -> _Value:
        """The value itself; a choice element not narrowed by ofType() has no one type to compile to."""
        if isinstance(value, _Choice):
            raise FhirTypeError(f"choice element {value.element.name!r} needs ofType() to pick a type")
        return value

    def literal(self, node: fp.Literal) -> _Value:
        """A literal as SQL: numbers exact (`BD` decimals), dates and times as their text."""
        if node.type == "empty":
            return _EMPTY
        if node.type == "boolean":
            return _Value("true" if node.value else "false", "boolean", False)
        if node.type == "integer":
            return _Value(str(node.value), "integer", False)
        if node.type == "decimal":
            return _Value(f"{node.value}BD", "decimal", False)
        return _Value(_text(str(node.value)), node.type, False)

    def variable(self, name: str, scope: _Scope) -> _Value:
        """`%name`: %rowIndex, %resource, or one of the view's constants."""
        if name == "rowIndex":
            return _Value(scope.row_index, "integer", False)
        if name in ("resource", "rootResource"):
            return _Value(self.resource_column, self.resource, False, self.root)
        if name in self.constants:
            return self.constants[name]
        raise UnknownConstant(f"%{name} is not a constant of the view")

    def member(self, base: _Value | _Choice, name: str, *, lenient: bool = False) -> _Value | _Choice:
        """`base.name`: the element's values, typed from the model (`lenient`: an unknown element is empty)."""
        base = self.value(base)
        if not base.type:
            return _EMPTY
        element = self.model.element(base.type, name)
        if element is None:
            if lenient:
                return _EMPTY
            if not self.model.has_type(base.type) and base.type not in self.model.primitives:
                raise UnknownElement(f"no type model for {base.type} (element {name!r})")
            raise UnknownElement(f"{base.type} has no element {name!r}")
        if element.choice:
            return _Choice(base, element)
        return self.read(base, name, element.types[0], element.many)

    def read(self, base: _Value, json_name: str, fhir_type: str, many: bool) -> _Value:
        """Field `json_name` of every item of `base`: one item or a collection, as the model says."""
        node = base.node.child(json_name, fhir_type, many) if base.node is not None else None
        primitive = fhir_type in self.model.primitives
        if not base.many:
            sql = self.resource_field(json_name) if base.sql == self.resource_column else _field(base.sql, json_name)
        else:
            item = self.var()
            sql = f"transform({base.sql}, {item} -> {_field(item, json_name)})"
            sql = f"flatten({self.non_null(sql)})" if many else sql
        if (many and primitive) or (base.many and not many):
            sql = self.non_null(sql)  # JSON nulls in a list (kept only for `_x` extension alignment) are no items
        if fhir_type == "integer64":
            sql = self.each(_Value(sql, "string", many or base.many), lambda x: f"CAST({x} AS BIGINT)").sql
        return _Value(sql, fhir_type, many or base.many, node)

    def resource_field(self, json_name: str) -> str:
        """A top-level element of the resource: its column when the caller gave one, else the parsed struct's field."""
        if self.elements is not None and json_name in self.elements:
            return self.elements[json_name]
        return _field(self.resource_column, json_name)

    def non_null(self, array_sql: str) -> str:
        """The array without null items (a null item is no FHIRPath item)."""
        item = self.var()
        return f"filter({array_sql}, {item} -> {item} IS NOT NULL)"

    def each(self, value: _Value, fn: Callable[[str], str], fhir_type: str | None = None) -> _Value:
        """`fn` applied to every item: a collection stays one (empty results dropped), one item stays one."""
        out_type = value.type if fhir_type is None else fhir_type
        if not value.many:
            return _Value(self.bind(value.sql, fn), out_type, False)
        item = self.var()
        return _Value(self.non_null(f"transform({value.sql}, {item} -> {fn(item)})"), out_type, True)

    def bind(self, sql: str, fn: Callable[[str], str]) -> str:
        """`fn(sql)`, evaluating `sql` once even when `fn` uses it several times."""
        if _simple(sql) or sql in ("NULL", "true", "false"):
            return fn(sql)
        name = self.var()
        return f"get(transform(array({sql}), {name} -> {fn(name)}), 0)"

    def as_array(self, value: _Value) -> str:
        """The value as a non-null SQL array (empty when the collection is)."""
        if value.many:
            return f"coalesce({value.sql}, array())"
        return self.non_null(f"array({value.sql})")

    def single(self, value: _Value, what: str) -> _Value:
        """One item: a collection of more than one fails the job (FHIRPath's singleton evaluation)."""
        if not value.many:
            return value
        message = _text(self.where(f"{what} has more than one value"))
        sql = self.bind(
            value.sql, lambda a: f"CASE WHEN size({a}) > 1 THEN raise_error({message}) ELSE get({a}, 0) END"
        )
        return _Value(sql, value.type, False, value.node)

    def boolean(self, value: _Value | _Choice, what: str) -> str:
        """The value as one boolean (SQL null when empty); NotBoolean for any other type."""
        value = self.value(value)
        if not value.type:
            return "CAST(NULL AS BOOLEAN)"
        if value.type != "boolean":
            raise NotBoolean(f"{what} is {value.type}, not boolean")
        return self.single(value, what).sql

    def type_name(self, node: fp.Node, *, resource: bool = False) -> str:
        """The FHIR type a type-specifier argument names (`Quantity`, `FHIR.string`, `System.String`)."""
        if isinstance(node, fp.TypeName):
            name = node.name
        else:
            parts: list[str] = []
            while isinstance(node, fp.Member):
                parts.insert(0, node.name)
                if node.base is None:
                    break
                node = node.base
            if not isinstance(node, fp.Member) or node.base is not None:
                raise FhirTypeError("a type name is needed here")
            name = ".".join(parts)
        name = _SYSTEM_TYPES.get(name, name.removeprefix("FHIR."))
        if resource:
            if name not in self.model.resources:
                raise FhirTypeError(f"{name!r} is not a {self.model.version} resource type")
            return name
        if name not in self.model.primitives and not self.model.has_type(name):
            raise FhirTypeError(f"{name!r} is not a FHIR type")
        return name

    def call(self, base: _Value | _Choice, node: fp.Call, scope: _Scope) -> _Value | _Choice:
        """A function applied to `base`: those the suite uses, count(), last() and the string functions."""
        name, args = node.name, node.args
        arity = {"where": (1, 1), "exists": (0, 1), "empty": (0, 0), "first": (0, 0), "last": (0, 0),
                 "count": (0, 0), "not": (0, 0), "ofType": (1, 1), "extension": (1, 1), "join": (0, 1),
                 "getResourceKey": (0, 0), "getReferenceKey": (0, 1), "lowBoundary": (0, 0),
                 "highBoundary": (0, 0), "select": (1, 1), "matches": (1, 1), "replaceMatches": (2, 2),
                 "trim": (0, 0)}  # fmt: skip
        if name not in arity:
            raise Unsupported(f"function {name}() is not supported")
        low, high = arity[name]
        if not low <= len(args) <= high:
            raise FhirTypeError(f"{name}() takes {low}..{high} arguments, got {len(args)}")
        if name == "ofType":
            return self.of_type(base, self.type_name(args[0]))
        if name in ("exists", "empty") and isinstance(base, _Choice) and not args:
            exists = self.choice_exists(base)
            return _Value(exists if name == "exists" else f"NOT {exists}", "boolean", False)
        return _FUNCTIONS[name](self, self.value(base), args, scope)

    # The functions after ofType() and a choice's exists()/empty(): each takes its (valued) input, args and scope.

    def fn_where(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        return self.filter(value, args[0], scope)

    def fn_exists(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        value = self.filter(value, args[0], scope) if args else value
        return _Value(self.exists(value), "boolean", False)

    def fn_empty(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        return _Value(f"NOT {self.exists(value)}", "boolean", False)

    def fn_first(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        if not value.many:
            return value
        return _Value(value.first or f"get({value.sql}, 0)", value.type, False, value.node)

    def fn_last(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        if not value.many:
            return value
        return _Value(f"try_element_at({value.sql}, -1)", value.type, False, value.node)

    def fn_count(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        sql = f"size({self.as_array(value)})" if value.type else "0"
        return _Value(sql, "integer", False)

    def fn_not(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        return _Value(f"(NOT {self.boolean(value, 'the input of not()')})", "boolean", False)

    def fn_extension(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        extensions = self.value(self.member(value, "extension"))
        url = fp.Binary("=", fp.Member(None, "url"), args[0])
        return self.filter(extensions, url, scope)

    def fn_join(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        return self.join(value, args, scope)

    def fn_low_boundary(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        return self.boundary(value, high=False)

    def fn_high_boundary(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        return self.boundary(value, high=True)

    def fn_select(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        """select(projection): the projection of every item (`$this`), its results flattened into one collection."""
        if not value.type:
            return _EMPTY
        found: list[_Value] = []

        def project(item: str) -> str:
            inner = _Scope(_Value(item, value.type, False, value.node), scope.row_index)
            found.append(self.value(self.expr(args[0], inner)))
            return found[-1].sql if found[-1].type else "NULL"

        if not value.many:
            sql = self.bind(value.sql, lambda x: f"CASE WHEN {x} IS NOT NULL THEN {project(x)} END")
            out = found[0]
            return _Value(sql, out.type, out.many, out.node) if out.type else _EMPTY
        item = self.var()
        body = project(item)
        out = found[0]
        if not out.type:
            return _EMPTY
        if out.many:
            return _Value(f"flatten({self.non_null(f'transform({value.sql}, {item} -> coalesce({body}, array()))')})",
                          out.type, True, out.node)  # fmt: skip
        return _Value(self.non_null(f"transform({value.sql}, {item} -> {body})"), out.type, True, out.node)

    def text_argument(self, node: fp.Node, scope: _Scope, what: str) -> str:
        """A function's text argument as one SQL value (NULL when empty)."""
        arg = self.single(self.value(self.expr(node, scope)), what)
        if arg.type and model.family(arg.type) != "text":
            raise FhirTypeError(f"{what} must be text, got {arg.type}")
        return arg.sql if arg.type else "CAST(NULL AS STRING)"

    def text_input(self, value: _Value, name: str) -> _Value:
        """The input of a string function: one text item."""
        if model.family(value.type) != "text":
            raise FhirTypeError(f"{name}() applies to text, not {value.type}")
        return self.single(value, f"the input of {name}()")

    def fn_matches(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        if not value.type:
            return _EMPTY
        regex = self.text_argument(args[0], scope, "matches() pattern")
        return _Value(f"({self.text_input(value, 'matches').sql} rlike {regex})", "boolean", False)

    def fn_replace_matches(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        if not value.type:
            return _EMPTY
        regex = self.text_argument(args[0], scope, "replaceMatches() pattern")
        substitution = self.text_argument(args[1], scope, "replaceMatches() substitution")
        text = self.text_input(value, "replaceMatches").sql
        return _Value(f"regexp_replace({text}, {regex}, {substitution})", "string", False)

    def fn_trim(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        if not value.type:
            return _EMPTY
        return _Value(f"trim({self.text_input(value, 'trim').sql})", "string", False)

    def fn_get_resource_key(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        if value.sql != self.resource_column:
            raise FhirTypeError("getResourceKey() applies to the view's resource")
        return self.read(value, "id", "id", False)

    def fn_get_reference_key(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        target = self.type_name(args[0], resource=True) if args else None
        return self.reference_key(value, target)

    def of_type(self, base: _Value | _Choice, fhir_type: str) -> _Value:
        """ofType(T): a choice element's `<name>T` field; any other value if it is a T, else empty."""
        if isinstance(base, _Choice):
            if fhir_type not in base.element.types:
                return _EMPTY
            return self.read(base.parent, base.element.name + _cap(fhir_type), fhir_type, base.element.many)
        return base if base.type == fhir_type else _EMPTY

    def choice_exists(self, choice: _Choice) -> str:
        """exists() of a choice element: any of its typed fields is there."""
        parent = choice.parent
        if not parent.type:
            return "false"
        fields = [
            self.read(parent, choice.element.name + _cap(t), t, choice.element.many) for t in choice.element.types
        ]
        return "(" + " OR ".join(self.exists(f) for f in fields) + ")"

    def exists(self, value: _Value) -> str:
        """exists() as boolean SQL, never null."""
        if not value.type:
            return "false"
        if value.many:
            return f"(coalesce(size({value.sql}), 0) > 0)"
        return f"({value.sql} IS NOT NULL)"

    def filter(self, value: _Value, criteria: fp.Node, scope: _Scope) -> _Value:
        """`where(criteria)`: the items for which criteria is true, evaluated with each item as `$this`."""
        if not value.type:
            return _EMPTY
        if not value.many:
            sql = self.bind(value.sql, lambda x: f"CASE WHEN {self.test(x, value, criteria, scope)} THEN {x} END")
            return _Value(sql, value.type, False, value.node)
        item = self.var()
        test = self.test(item, value, criteria, scope)
        return _Value(f"filter({value.sql}, {item} -> {test})", value.type, True, value.node)

    def test(self, item: str, value: _Value, criteria: fp.Node, scope: _Scope) -> str:
        """where()'s criteria for one item (`$this`), as boolean SQL."""
        inner = _Scope(_Value(item, value.type, False, value.node), scope.row_index)
        return self.boolean(self.expr(criteria, inner), "where() criteria")

    def join(self, value: _Value, args: tuple[fp.Node, ...], scope: _Scope) -> _Value:
        """join(separator): the items as text, empty text for no items."""
        separator = "''"
        if args:
            sep = self.single(self.value(self.expr(args[0], scope)), "join() separator")
            if sep.type and model.family(sep.type) != "text":
                raise FhirTypeError(f"join() separator must be text, got {sep.type}")
            separator = sep.sql if sep.type else "''"
        if not value.type:
            return _Value("''", "string", False)
        items = (
            value if model.spark_type(value.type) == "string" else self.each(value, lambda x: f"CAST({x} AS STRING)")
        )
        return _Value(f"coalesce(array_join({self.as_array(items)}, {separator}), '')", "string", False)

    def boundary(self, value: _Value, *, high: bool) -> _Value:
        """lowBoundary()/highBoundary() of dates, times and date-times: the earliest/latest value they may mean."""
        if not value.type:
            return _EMPTY
        if model.family(value.type) not in ("date", "time"):
            # The precision of a decimal is its JSON text's, which from_json does not keep (it reads the value).
            raise Unsupported(f"{'highBoundary' if high else 'lowBoundary'}() of {value.type} is not supported")
        if value.type == "time":
            return self.each(value, lambda x: _time_boundary(x, high))
        return self.each(value, lambda x: _date_boundary(x, high, with_time=value.type != "date"))

    def reference_key(self, value: _Value, target: str | None) -> _Value:
        """getReferenceKey([type]): the id a reference names (through the Bundle's ref_map), if of that type."""
        if not value.type:
            return _EMPTY
        if value.type != "Reference":
            raise FhirTypeError(f"getReferenceKey() applies to a Reference, not {value.type}")
        references = self.value(self.member(value, "reference"))
        pattern = _text(_REFERENCE)

        # With a type, the type is in the pattern: one regex per reference. `Type/id` is the reference's last
        # segments either way, so both patterns take the same id.
        if target is not None:
            pattern = _text(_REFERENCE.replace("([A-Za-z]+)/", f"{target}/", 1))

        def key(ref: str) -> str:
            resolved = f"coalesce({REF_MAP}[{ref}], {ref})"
            return f"nullif(regexp_extract({resolved}, {pattern}, {1 if target else 2}), '')"

        return self.each(references, key, "string")

    def index(self, value: _Value, index: _Value) -> _Value:
        """`value[index]`: the item at that position, empty past the end."""
        if index.type and index.type not in _NUMBERS - {"decimal"}:
            raise FhirTypeError(f"an index must be an integer, got {index.type}")
        if not value.type or not index.type:
            return _EMPTY
        position = self.single(index, "an index").sql
        if value.many:
            return _Value(f"get({value.sql}, {position})", value.type, False, value.node)
        return _Value(f"CASE WHEN {position} = 0 THEN {value.sql} END", value.type, False, value.node)

    def binary(self, node: fp.Binary, scope: _Scope) -> _Value:
        """An infix operator over its two compiled operands."""
        op = node.op
        if op in ("is", "as", "~", "!~"):
            raise Unsupported(f"operator {op!r} is not supported")
        left = self.value(self.expr(node.left, scope))
        right = self.value(self.expr(node.right, scope))
        if op in ("and", "or", "xor", "implies"):
            return self.logic(op, left, right)
        if op in ("=", "!="):
            return self.equality(op, left, right)
        if op in ("<", "<=", ">", ">="):
            return self.ordering(op, left, right)
        if op in ("in", "contains"):
            return self.membership(op, left, right)
        if op == "|":
            return self.union_of(left, right)
        return self.arithmetic(op, left, right)

    def logic(self, op: str, left: _Value, right: _Value) -> _Value:
        """`and`, `or`, `xor`, `implies` over booleans."""
        a = self.boolean(left, f"left operand of {op}")
        b = self.boolean(right, f"right operand of {op}")
        if op in ("and", "or"):
            return _Value(f"({a} {op.upper()} {b})", "boolean", False)
        if op == "xor":
            return _Value(f"({a} <> {b})", "boolean", False)
        return _Value(f"(NOT {a} OR {b})", "boolean", False)

    def ordering(self, op: str, left: _Value, right: _Value) -> _Value:
        """`<`, `<=`, `>`, `>=` over single items (empty when either is empty)."""
        lhs, rhs = self.comparable(op, left, right, ordered=True)
        if lhs is None or rhs is None:
            return _Value("CAST(NULL AS BOOLEAN)", "boolean", False)
        return _Value(f"({lhs} {op} {rhs})", "boolean", False)

    def membership(self, op: str, left: _Value, right: _Value) -> _Value:
        """`item in collection` / `collection contains item`."""
        item, collection = (left, right) if op == "in" else (right, left)
        if not item.type or not collection.type:
            return _Value("CAST(NULL AS BOOLEAN)" if not item.type else "false", "boolean", False)
        self.compatible(op, item, collection)
        single = self.single(item, f"left operand of {op}").sql
        return _Value(f"array_contains({self.as_array(collection)}, {single})", "boolean", False)

    def union_of(self, left: _Value, right: _Value) -> _Value:
        """`left | right`: the distinct items of both (of one Spark type)."""
        if not left.type or not right.type:
            return left if left.type else right
        if model.spark_type(left.type) != model.spark_type(right.type) or self.complex(left) or self.complex(right):
            raise Unsupported(f"a union of {left.type} and {right.type} is not supported")
        if not left.many and not right.many:  # `(a | b).first()`, the common fallback, is coalesce(a, b)
            item = self.var()
            both = f"filter(array({left.sql}, {right.sql}), {item} -> {item} IS NOT NULL)"
            return _Value(f"array_distinct({both})", left.type, True, first=f"coalesce({left.sql}, {right.sql})")
        return _Value(f"array_distinct(concat({self.as_array(left)}, {self.as_array(right)}))", left.type, True)

    def complex(self, value: _Value) -> bool:
        """A value of a complex (struct) type, not a primitive and not empty."""
        return bool(value.type) and value.type not in self.model.primitives

    def compatible(self, op: str, left: _Value, right: _Value) -> None:
        """Refuse to compare values of different families (text with numbers, ...) as FHIRPath does."""
        if self.complex(left) or self.complex(right):
            raise Unsupported(f"{op!r} between {left.type} and {right.type} (complex types) is not supported")
        families = {model.family(left.type), model.family(right.type)}
        if len(families) > 1 and families != {"text", "date"} and families != {"text", "time"}:
            raise FhirTypeError(f"{op!r} compares {left.type} with {right.type}")

    def comparable(self, op: str, left: _Value, right: _Value, *, ordered: bool) -> tuple[str | None, str | None]:
        """Both operands as single items (None when one is empty), checked to compare."""
        if not left.type or not right.type:
            return None, None
        self.compatible(op, left, right)
        if ordered and model.family(left.type) not in _ORDERED:
            raise FhirTypeError(f"{op!r} does not order {left.type} values")
        return self.single(left, f"left operand of {op}").sql, self.single(right, f"right operand of {op}").sql

    def equality(self, op: str, left: _Value, right: _Value) -> _Value:
        """`=` / `!=`: one item with one item, or collections item by item."""
        if not left.type or not right.type:
            return _Value("CAST(NULL AS BOOLEAN)", "boolean", False)
        self.compatible(op, left, right)
        if not left.many and not right.many:
            sql = f"({left.sql} = {right.sql})"
        else:
            # FHIRPath compares collections item by item, in order; empty on either side gives empty.
            a, b = self.as_array(left), self.as_array(right)
            sql = f"CASE WHEN size({a}) = 0 OR size({b}) = 0 THEN NULL ELSE {a} = {b} END"
        return _Value(sql if op == "=" else f"(NOT {sql})", "boolean", False)

    def arithmetic(self, op: str, left: _Value, right: _Value) -> _Value:
        """`+ - * / div mod &` over single items: `/` always gives a decimal, `+` also joins text."""
        if op == "&":
            x, y = (self.single(v, f"operand of {op}").sql if v.type else "NULL" for v in (left, right))
            return _Value(f"concat(coalesce({x}, ''), coalesce({y}, ''))", "string", False)
        if not left.type or not right.type:
            return _EMPTY
        a = self.single(left, f"left operand of {op}")
        b = self.single(right, f"right operand of {op}")
        if op == "+" and model.family(a.type) == model.family(b.type) == "text":
            return _Value(f"concat({a.sql}, {b.sql})", "string", False)
        if a.type not in _NUMBERS or b.type not in _NUMBERS:
            raise FhirTypeError(f"{op!r} needs numbers, got {a.type} and {b.type}")
        integers = a.type != "decimal" and b.type != "decimal"
        if op == "/":
            return _Value(f"(CAST({a.sql} AS {model.DECIMAL}) / CAST({b.sql} AS {model.DECIMAL}))", "decimal", False)
        if op == "div":
            return _Value(f"CAST({a.sql} div {b.sql} AS INT)", "integer", False)
        sql_op = {"+": "+", "-": "-", "*": "*", "mod": "%"}[op]
        return _Value(f"({a.sql} {sql_op} {b.sql})", "integer" if integers else "decimal", False)

    # -- ViewDefinition ----------------------------------------------------------------------------------------

    def constant(self, spec: Any) -> tuple[str, _Value]:
        """A view constant (`name`, one `value[x]`) as a typed literal."""
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise InvalidView(self.where("every constant needs a name"))
        values = [key for key in spec if key.startswith("value")]
        if len(values) != 1:
            raise InvalidView(self.where(f"constant {spec['name']!r} needs exactly one value[x]"))
        fhir_type = values[0][len("value") :]
        fhir_type = fhir_type[:1].lower() + fhir_type[1:]
        value = spec[values[0]]
        if fhir_type not in self.model.primitives:
            raise InvalidView(self.where(f"constant {spec['name']!r}: {values[0]} is not a primitive type"))
        if fhir_type == "boolean":
            if not isinstance(value, bool):
                raise InvalidView(self.where(f"constant {spec['name']!r} is not a boolean"))
            return spec["name"], _Value("true" if value else "false", "boolean", False)
        if fhir_type in _NUMBERS:
            return spec["name"], self.number_constant(spec["name"], fhir_type, value)
        if not isinstance(value, str):
            raise InvalidView(self.where(f"constant {spec['name']!r} is not text"))
        return spec["name"], _Value(_text(value), fhir_type, False)

    def number_constant(self, name: str, fhir_type: str, value: Any) -> _Value:
        """A numeric constant's value as an exact literal: an integer type's must be whole."""
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            raise InvalidView(self.where(f"constant {name!r} is not a number"))
        number = Decimal(str(value))
        if fhir_type != "decimal":
            if number != number.to_integral_value():
                raise InvalidView(self.where(f"constant {name!r} is not an integer"))
            return _Value(str(int(number)), fhir_type, False)
        return _Value(f"{number:f}BD", "decimal", False)

    def column(self, spec: Any, scope: _Scope) -> tuple[ViewColumn, str]:
        """A column's definition and its SQL value in `scope`, cast to the type the view declares."""
        if not isinstance(spec, Mapping):
            raise InvalidView(self.where("a column must be an object"))
        name = spec.get("name")
        if not isinstance(name, str) or not _COLUMN_NAME.fullmatch(name):
            raise InvalidView(self.where(f"column name {name!r} is not a name ([A-Za-z][A-Za-z0-9_]*)"))
        what = f"column {name!r}"
        value = self.value(self.path(spec.get("path"), scope, f"{what} path"))
        if self.complex(value):
            raise FhirTypeError(self.where(f"{what} path gives {value.type} values, not a primitive type"))
        declared = spec.get("type")
        if declared is not None and not isinstance(declared, str):
            raise InvalidView(self.where(f"{what} type must be text"))
        fhir_type = declared or value.type or "string"
        collection = spec.get("collection", False)
        if not isinstance(collection, bool):
            raise InvalidView(self.where(f"{what} collection must be true or false"))
        spark = model.spark_type(fhir_type)
        if not value.type:
            sql = f"CAST(array() AS array<{spark}>)" if collection else f"CAST(NULL AS {spark})"
        elif collection:
            items = self.as_array(value)
            if model.spark_type(value.type) != spark:
                items = f"CAST({items} AS array<{spark}>)"
            sql = items
        else:
            sql = self.single(value, what).sql
            if model.spark_type(value.type) != spark:
                sql = f"CAST({sql} AS {spark})"
        return ViewColumn(name, fhir_type, f"array<{spark}>" if collection else spark, collection), sql

    def select(self, spec: Any, scope: _Scope) -> _Rows:
        """A select's rows in `scope`: its forEach / forEachOrNull / repeat over its columns, selects, unionAll."""
        if not isinstance(spec, Mapping):
            raise InvalidView(self.where("a select must be an object"))
        unknown = sorted(set(spec) - _SELECT_KEYS)
        if unknown:
            raise InvalidView(self.where(f"a select has unknown keys {unknown}"))
        loops = [key for key in ("forEach", "forEachOrNull", "repeat") if key in spec]
        if len(loops) > 1:
            raise InvalidView(self.where(f"a select has both {loops[0]} and {loops[1]}"))
        if not loops:
            return self.body(spec, scope)
        if loops[0] == "repeat":
            return self.repeat(spec, scope)
        over = self.value(self.path(spec[loops[0]], scope, loops[0]))
        or_null = loops[0] == "forEachOrNull"
        if not over.type:
            rows = self.body(spec, _Scope(_EMPTY, "0"))
            return rows if or_null else _Rows(rows.columns, self.none(rows))
        item, position = self.var(), self.var()
        # forEachOrNull over one value (or none): the body once, its item that value (null when empty), at index 0.
        one_item = or_null and not over.many
        rows = self.body(spec, _Scope(_Value(item, over.type, False, over.node), "0" if one_item else position))
        if one_item and rows.row is not None:
            return _Rows(rows.columns, row=rows.row, bindings=[(item, over.sql), *rows.bindings])

        def each(items: str) -> str:
            return _each(items, item, position, rows)

        items = self.as_array(over)
        if or_null:  # no item: the body once over an empty (typed) item, so its columns are null
            sql = self.bind(items, lambda a: each(f"IF(size({a}) > 0, {a}, array(get({a}, 0)))"))
            return _Rows(rows.columns, sql, single=rows.one and not over.many)
        return _Rows(rows.columns, each(items))

    def none(self, rows: _Rows) -> str:
        """No rows, typed like `rows`."""
        row = self.var()
        return f"filter({rows.array_sql()}, {row} -> false)"

    def repeat(self, spec: Mapping[str, Any], scope: _Scope) -> _Rows:
        """`repeat`: the body over every node the paths reach, recursively, depth first (%rowIndex in that order)."""
        paths = spec["repeat"]
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise InvalidView(self.where("repeat must be a non-empty list of FHIRPath texts"))
        chains = [self.chain(p) for p in paths]
        first = [self.walk(scope.this, chain) for chain in chains]
        reached = [v for v in first if v.type]
        if not reached:
            rows = self.body(spec, _Scope(_EMPTY, "0"))
            return _Rows(rows.columns, self.none(rows))
        node_type = reached[0].type
        if any(v.type != node_type for v in reached) or any(v.node is None for v in reached):
            raise FhirTypeError(self.where(f"repeat paths {paths} reach different types"))
        template = ReadNode(node_type, False)  # what every level reads: the body's elements and the paths'
        self.depths[id(template)] = self.max_depth
        for value in reached:
            value.node.includes.append(template)  # type: ignore[union-attr]
        body_node = ReadNode(node_type, False)
        template.includes.append(body_node)
        item, position = self.var(), self.var()
        rows = self.body(spec, _Scope(_Value(item, node_type, False, body_node), position))

        def children(node_sql: str) -> str:
            return self.repeat_children(node_sql, chains, node_type, template)

        too_deep = _text(self.where(f"repeat {paths} nests deeper than {self.max_depth} levels"))

        def visit(node_sql: str, left: int) -> str:
            """The node's body projection, then its children's, depth first."""
            own = f"array({self.project(node_sql, body_node)})"
            below = children(node_sql)
            if not below:
                return own
            if left == 0:
                return f"IF(size({below}) > 0, raise_error({too_deep}), {own})"
            child = self.var()
            return f"concat({own}, flatten(transform({below}, {child} -> {visit(child, left - 1)})))"

        start = self.var()
        roots = self.non_null(
            f"concat({', '.join(self.as_array(v) for v in reached)})" if len(reached) > 1 else self.as_array(reached[0])
        )
        nodes = f"flatten(transform({roots}, {start} -> {visit(start, self.max_depth)}))"
        return _Rows(rows.columns, _each(nodes, item, position, rows))

    def repeat_children(self, node_sql: str, chains: list[list[str]], node_type: str, template: ReadNode) -> str:
        """A repeat node's children through every path, as one array (SQL); "" when no path reaches any."""
        found = []
        for chain in chains:
            child = self.walk(_Value(node_sql, node_type, False, template), chain)
            if child.type:
                if child.type != node_type:
                    raise FhirTypeError(self.where(f"repeat path {'.'.join(chain)!r} leaves {node_type}"))
                child.node.loop = template  # type: ignore[union-attr]
                found.append(self.as_array(child))
        if not found:
            return ""
        return self.non_null(f"concat({', '.join(found)})" if len(found) > 1 else found[0])

    def chain(self, path: str) -> list[str]:
        """A repeat path as element names; repeat follows plain element paths only."""
        try:
            node = fp.parse(path)
        except ViewError as exc:
            raise type(exc)(self.where(f"repeat path {path!r}: {exc}")) from None
        names: list[str] = []
        while isinstance(node, fp.Member):
            names.insert(0, node.name)
            if node.base is None:
                return names
            node = node.base
        raise Unsupported(self.where(f"repeat path {path!r} is not an element path (a.b.c)"))

    def walk(self, start: _Value | _Choice, chain: list[str]) -> _Value:
        """A plain element path from `start`; an element the type does not have is empty (repeat's paths)."""
        value = self.value(start)
        for name in chain:
            value = self.value(self.member(value, name, lenient=True))
        return value

    def project(self, sql: str, node: ReadNode) -> str:
        """`sql` (a struct) reduced to the fields `node` reads: one type for a repeat's nodes at every level."""
        fields = []
        for name, child in node.children.items():
            value = _field(sql, name)
            if child.type not in self.model.primitives:
                if child.many:
                    item = self.var()
                    value = f"transform({value}, {item} -> IF({item} IS NULL, NULL, {self.project(item, child)}))"
                else:
                    value = f"IF({value} IS NULL, NULL, {self.project(value, child)})"
            fields.append(f"{_text(name)}, {value}")
        if not fields:
            return "named_struct('_', true)"  # read for its presence only
        return "named_struct(" + ", ".join(fields) + ")"

    def body(self, spec: Mapping[str, Any], scope: _Scope) -> _Rows:
        """The cross product of a select's parts: its columns (one row), each nested select, its unionAll."""
        parts: list[_Rows] = []
        if "column" in spec:
            if not isinstance(spec["column"], list):
                raise InvalidView(self.where("column must be a list"))
            compiled = [self.column(c, scope) for c in spec["column"]]
            parts.append(_Rows([c for c, _ in compiled], row=[sql for _, sql in compiled]))
        if "select" in spec:
            if not isinstance(spec["select"], list):
                raise InvalidView(self.where("select must be a list"))
            parts += [self.select(s, scope) for s in spec["select"]]
        if "unionAll" in spec:
            parts.append(self.union(spec["unionAll"], scope))
        return self.product(parts)

    def union(self, branches: Any, scope: _Scope) -> _Rows:
        """unionAll: the branches' rows one after the other; they must give the same columns in the same order."""
        if not isinstance(branches, list) or not branches:
            raise InvalidView(self.where("unionAll must be a non-empty list of selects"))
        rows = [self.select(b, scope) for b in branches]
        first = [(c.name, c.spark_type) for c in rows[0].columns]
        for other in rows[1:]:
            columns = [(c.name, c.spark_type) for c in other.columns]
            if columns != first:
                raise UnionMismatch(self.where(f"unionAll branches give different columns: {first} and {columns}"))
        if len(rows) == 1:
            return rows[0]
        return _Rows(rows[0].columns, f"concat({', '.join(r.array_sql() for r in rows)})")

    def product(self, parts: list[_Rows]) -> _Rows:
        """Every combination of the parts' rows, columns in part order (a part without rows gives none)."""
        columns = [c for part in parts for c in part.columns]
        if len(parts) == 1 and parts[0].row is None:
            return parts[0]
        repeated = any(part.row is None for part in parts)  # a value inlined into a loop is computed per row
        values: list[str] = []
        loops: list[tuple[str, str]] = []
        bindings: list[tuple[str, str]] = []
        for part in parts:
            inline = not repeated or (not part.bindings and all(_simple(v) for v in (part.row or [])))
            if part.row is not None and inline:
                values += part.row
                bindings += part.bindings
                continue
            item = self.var()
            loops.append((item, part.array_sql()))  # a row of computed values: a one-row loop, computed once
            values += [_field(item, c.name) for c in part.columns]
        row = _struct(columns, values)
        if not loops:
            return _Rows(columns, row=values, bindings=bindings)
        single = all(part.one for part in parts)
        sql = ""
        for item, array_sql in reversed(loops):
            inner = f"transform({array_sql}, {item} -> {sql or row})"
            sql = f"flatten({inner})" if sql else inner
        return _Rows(columns, sql, single=single)


_Function = Callable[[_Compiler, _Value, tuple[fp.Node, ...], _Scope], _Value]
# FHIRPath function name -> its compiler (ofType() and a choice's exists()/empty() are handled before: see `call`).
_FUNCTIONS: dict[str, _Function] = {
    "where": _Compiler.fn_where,
    "exists": _Compiler.fn_exists,
    "empty": _Compiler.fn_empty,
    "first": _Compiler.fn_first,
    "last": _Compiler.fn_last,
    "count": _Compiler.fn_count,
    "not": _Compiler.fn_not,
    "extension": _Compiler.fn_extension,
    "join": _Compiler.fn_join,
    "lowBoundary": _Compiler.fn_low_boundary,
    "highBoundary": _Compiler.fn_high_boundary,
    "getResourceKey": _Compiler.fn_get_resource_key,
    "getReferenceKey": _Compiler.fn_get_reference_key,
    "select": _Compiler.fn_select,
    "matches": _Compiler.fn_matches,
    "replaceMatches": _Compiler.fn_replace_matches,
    "trim": _Compiler.fn_trim,
}


def compile_view(
    view: Mapping[str, Any],
    *,
    fhir_version: str = "R4",
    max_depth: int = DEFAULT_MAX_DEPTH,
    resource_column: str = RESOURCE,
    elements: Mapping[str, str] | None = None,
) -> CompiledView:
    """Compile a ViewDefinition (parsed JSON) for resources of FHIR `fhir_version`; ViewError when it cannot.

    The SQL reads the parsed resource from the column `resource_column`; `elements` (element name -> SQL) gives
    top-level elements that a caller already holds as columns (bronze_encounter's flatten: the resource's elements
    as columns, `class` parsed to the version's shape), read from there instead.
    """
    if not isinstance(view, Mapping):
        raise InvalidView("a ViewDefinition must be a JSON object")
    name = view.get("name") if isinstance(view.get("name"), str) else None
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise InvalidView(f"view {name!r}: `resource` (the resource type) is required")
    types = model.load(fhir_version)
    if not types.is_resource(resource):
        raise InvalidView(f"view {name!r}: no {fhir_version} type model for resource {resource!r}")
    compiler = _Compiler(types, resource, name or resource, max_depth, resource_column, elements)
    constants = view.get("constant", [])
    if not isinstance(constants, list):
        raise InvalidView(compiler.where("constant must be a list"))
    compiler.constants = dict(compiler.constant(c) for c in constants)
    selects = view.get("select")
    if not isinstance(selects, list) or not selects:
        raise InvalidView(compiler.where("select must be a non-empty list"))
    root = _Scope(_Value(resource_column, resource, False, compiler.root), "0")
    rows = compiler.body({"select": selects}, root)
    if not rows.columns:
        raise InvalidView(compiler.where("the view has no columns"))
    seen: set[str] = set()
    for column in rows.columns:
        if column.name in seen:
            raise InvalidView(compiler.where(f"column name {column.name!r} is used twice"))
        seen.add(column.name)
    conditions = [
        f"{compiler.resource_field('resourceType')} = {_text(resource)}",
        *_where_conditions(compiler, view, root),
    ]
    schema = read_schema(compiler.root, types.primitives, compiler.depths)
    sql = f"CASE WHEN {' AND '.join(conditions)} THEN {rows.array_sql()} END"
    one_row = rows.one and "where" not in view
    row = tuple(rows.row) if rows.row is not None and one_row else None
    bindings = tuple(rows.bindings) if row is not None else ()
    return CompiledView(
        name, resource, fhir_version, tuple(rows.columns), schema, sql, one_row, resource_column, row, bindings
    )


def _where_conditions(compiler: _Compiler, view: Mapping[str, Any], root: _Scope) -> list[str]:
    """The view's `where` paths as boolean SQL, each false when its path gives empty."""
    conditions: list[str] = []
    wheres = view.get("where", [])
    if not isinstance(wheres, list):
        raise InvalidView(compiler.where("where must be a list"))
    for spec in wheres:
        if not isinstance(spec, Mapping):
            raise InvalidView(compiler.where("a where must be an object with a path"))
        value = compiler.path(spec.get("path"), root, "where path")
        try:
            conditions.append(f"coalesce({compiler.boolean(value, 'where path')}, false)")
        except ViewError as exc:
            raise type(exc)(compiler.where(f"where path {spec.get('path')!r}: {exc}")) from None
    return conditions
