"""The FHIRPath parser: the trees it builds (precedence, invocations, literals) and where it refuses text."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streaming.viewdef.errors import FhirPathSyntaxError
from streaming.viewdef.fhirpath import (
    Binary,
    Call,
    Index,
    Literal,
    Member,
    Node,
    Special,
    TypeName,
    Unary,
    Variable,
    parse,
)


def _m(*names: str) -> Node:
    """`a.b.c` as the parser builds it."""
    node: Node | None = None
    for name in names:
        node = Member(node, name)
    assert node is not None
    return node


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("id", Member(None, "id")),
        ("name.family", _m("name", "family")),
        ("name[0].family", Member(Index(Member(None, "name"), Literal(0, "integer")), "family")),
        ("name.given.first()", Call(_m("name", "given"), "first", ())),
        ("getResourceKey()", Call(None, "getResourceKey", ())),
        (
            "link.other.getReferenceKey(Patient)",
            Call(_m("link", "other"), "getReferenceKey", (Member(None, "Patient"),)),
        ),
        ("name.given.join(', ' )", Call(_m("name", "given"), "join", (Literal(", ", "string"),))),
        (
            "name.where(use = %name_use).family",
            Member(
                Call(Member(None, "name"), "where", (Binary("=", Member(None, "use"), Variable("name_use")),)), "family"
            ),
        ),
        ("$this", Special("this")),
        ("%rowIndex", Variable("rowIndex")),
        ("%`odd name`", Variable("odd name")),
        ("text.div", _m("text", "div")),  # a keyword after a dot is an element name
        ("`class`.code", _m("class", "code")),
        ("'it''s'", None),
        ("1.50", Literal(Decimal("1.50"), "decimal")),
        ("-1", Unary("-", Literal(1, "integer"))),
        ("@2010-10-10", Literal("2010-10-10", "date")),
        ("@2015-02-07T13:28:17.239+02:00", Literal("2015-02-07T13:28:17.239+02:00", "dateTime")),
        ("@T18:12", Literal("18:12", "time")),
        ("{}", Literal(None, "empty")),
        ("'a\\'b\\u0041\\n'", Literal("a'bA\n", "string")),
        ("true and false", Binary("and", Literal(True, "boolean"), Literal(False, "boolean"))),
        ("value is Quantity", Binary("is", Member(None, "value"), TypeName("Quantity"))),
        ("value as FHIR.string", Binary("as", Member(None, "value"), TypeName("FHIR.string"))),
        ("a // a comment\n.b", _m("a", "b")),
    ],
)
def test_parse_builds_the_tree(text: str, tree: Node | None) -> None:
    if tree is None:  # `''` inside a string is no escape in FHIRPath: two strings side by side do not parse
        with pytest.raises(FhirPathSyntaxError):
            parse(text)
        return
    assert parse(text) == tree


def test_operators_bind_by_fhirpath_precedence() -> None:
    a, b, c = (Member(None, n) for n in "abc")
    assert parse("a or b and c") == Binary("or", a, Binary("and", b, c))
    assert parse("a = b or c") == Binary("or", Binary("=", a, b), c)
    assert parse("a + b * c") == Binary("+", a, Binary("*", b, c))
    assert parse("a < b = c") == Binary("=", Binary("<", a, b), c)
    assert parse("a | b = c") == Binary("=", Binary("|", a, b), c)
    assert parse("a implies b xor c") == Binary("implies", a, Binary("xor", b, c))
    assert parse("a - b - c") == Binary("-", Binary("-", a, b), c)  # left-associative
    assert parse("(a or b) and c") == Binary("and", Binary("or", a, b), c)
    assert parse("a div b mod c") == Binary("mod", Binary("div", a, b), c)
    assert parse("-a.b") == Unary("-", _m("a", "b"))  # the path binds tighter than the sign


def test_the_suites_expressions_parse() -> None:
    tree = parse("extension('http://x/race').extension('ombCategory').value.ofType(Coding).code.first()")
    race = Call(None, "extension", (Literal("http://x/race", "string"),))
    omb = Call(race, "extension", (Literal("ombCategory", "string"),))
    coding = Call(Member(omb, "value"), "ofType", (Member(None, "Coding"),))
    assert tree == Call(Member(coding, "code"), "first", ())
    numbers = parse("value.ofType(Range).high.value / value.ofType(Range).low.value")
    high = Member(Member(Call(Member(None, "value"), "ofType", (Member(None, "Range"),)), "high"), "value")
    low = Member(Member(Call(Member(None, "value"), "ofType", (Member(None, "Range"),)), "low"), "value")
    assert numbers == Binary("/", high, low)
    assert parse("(gender = 'male').not()") == Call(
        Binary("=", Member(None, "gender"), Literal("male", "string")), "not", ()
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("@@", "unexpected character '@' at 0"),
        ("name.", "expected an identifier at 5"),
        ("name.where(use = 'x'", "expected ')' at 20"),
        ("name[0", "expected ']' at 6"),
        ("a b", "expected an operator or the end at 2"),
        ("and", "expected a term at 0"),
        ("'open", "unexpected character"),
        ("", "must be non-empty text"),
        ("   ", "must be non-empty text"),
        ("name.$this", "expected an identifier at 5"),
    ],
)
def test_syntax_errors_say_where(text: str, says: str) -> None:
    with pytest.raises(FhirPathSyntaxError) as error:
        parse(text)
    assert says in str(error.value)


def test_a_non_text_path_is_refused() -> None:
    with pytest.raises(FhirPathSyntaxError):
        parse(1)  # type: ignore[arg-type]
