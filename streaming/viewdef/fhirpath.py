"""FHIRPath text -> syntax tree: the grammar of the FHIRPath N1 specification, without Spark or a type model.

Every construct of the language parses (so a view gets one clear message for a syntax error); which functions and
operators the compiler supports is the compiler's business (`compiler.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from streaming.viewdef.errors import FhirPathSyntaxError


@dataclass(frozen=True)
class Literal:
    """A literal: `type` is string, boolean, integer, decimal, date, dateTime, time, or empty (`{}`)."""

    value: str | bool | int | Decimal | None
    type: str


@dataclass(frozen=True)
class Member:
    """`base.name`, or `name` on the input collection when base is None."""

    base: Node | None
    name: str


@dataclass(frozen=True)
class Call:
    """`base.name(args)`, or `name(args)` on the input collection when base is None."""

    base: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index:
    """`base[index]`."""

    base: Node
    index: Node


@dataclass(frozen=True)
class Unary:
    """`+x` or `-x`."""

    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    """`left op right` for every infix operator (`and`, `=`, `+`, `|`, `is`, ...)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Variable:
    """`%name`: a view constant or an environment variable such as `%rowIndex`."""

    name: str


@dataclass(frozen=True)
class Special:
    """`$this`, `$index` or `$total` (without the `$`)."""

    name: str


@dataclass(frozen=True)
class TypeName:
    """A type specifier after `is`/`as` (`FHIR.Quantity`, `string`)."""

    name: str


Node = Literal | Member | Call | Index | Unary | Binary | Variable | Special | TypeName

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
    |(?P<datetime>@\d{4}(-\d{2}(-\d{2})?)?(T(\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:\d{2})?)?)
    |(?P<time>@T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)
    |(?P<number>\d+(\.\d+)?)
    |(?P<string>'(\\.|[^'\\])*')
    |(?P<delimited>`(\\.|[^`\\])*`)
    |(?P<special>\$[A-Za-z]+)
    |(?P<variable>%([A-Za-z_][A-Za-z0-9_]*|'(\\.|[^'\\])*'|`(\\.|[^`\\])*`))
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|!=|!~|[-+*/&|=~<>()\[\].,{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# Infix operators by precedence, lowest first (FHIRPath N1 §"Operator precedence").
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<", "<=", ">", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
)
_KEYWORDS = {"true", "false", *(op for level in _LEVELS for op in level if op.isalpha())}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def _unescape(body: str) -> str:
    """The value of a quoted string or identifier without its quotes: FHIRPath's backslash escapes resolved."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(text: str) -> list[_Token]:
    """The text's tokens, comments and white space dropped, ending with an `end` token."""
    tokens: list[_Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise FhirPathSyntaxError(f"unexpected character {text[at]!r} at {at} in {text!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), at))
        at = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent with one function per precedence level."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, token: _Token, expected: str) -> FhirPathSyntaxError:
        found = repr(token.text) if token.text else "the end"
        return FhirPathSyntaxError(f"expected {expected} at {token.at} in {self.text!r}, found {found}")

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise self.fail(token, repr(text))

    def is_operator(self, token: _Token, ops: tuple[str, ...]) -> bool:
        return token.kind in ("op", "word") and token.text in ops

    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "an operator or the end")
        return node

    def expression(self, level: int) -> Node:
        """An expression of operators at `level` and tighter (left-associative)."""
        if level == len(_LEVELS):
            return self.unary()
        node = self.expression(level + 1)
        while self.is_operator(self.peek(), _LEVELS[level]):
            op = self.take().text
            right = self.type_name() if op in ("is", "as") else self.expression(level + 1)
            node = Binary(op, node, right)
        return node

    def type_name(self) -> TypeName:
        parts = [self.identifier()]
        while self.peek().text == ".":
            self.take()
            parts.append(self.identifier())
        return TypeName(".".join(parts))

    def unary(self) -> Node:
        if self.peek().text in ("+", "-"):
            op = self.take().text
            return Unary(op, self.unary())
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        """`.invocation` and `[index]` after a term, as many as follow."""
        while True:
            token = self.peek()
            if token.text == ".":
                self.take()
                node = self.invocation(node)
            elif token.text == "[":
                self.take()
                index = self.expression(0)
                self.expect("]")
                node = Index(node, index)
            else:
                return node

    def identifier(self) -> str:
        token = self.take()
        if token.kind == "word":
            return token.text
        if token.kind == "delimited":
            return _unescape(token.text[1:-1])
        raise self.fail(token, "an identifier")

    def invocation(self, base: Node | None) -> Node:
        """`name`, `name(args)` or `$this`, applied to `base`."""
        if base is None and self.peek().kind == "special":
            return Special(self.take().text[1:])
        name = self.identifier()
        if self.peek().text != "(":
            return Member(base, name)
        self.take()
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.expression(0))
            while self.peek().text == ",":
                self.take()
                args.append(self.expression(0))
        self.expect(")")
        return Call(base, name, tuple(args))

    def term(self) -> Node:
        """A literal, `%variable`, `(expression)` or an invocation on the input."""
        token = self.peek()
        if token.text == "(":
            self.take()
            node = self.expression(0)
            self.expect(")")
            return node
        if token.text == "{":
            self.take()
            self.expect("}")
            return Literal(None, "empty")
        if token.kind in _LITERAL_TOKENS or (token.kind == "word" and token.text in ("true", "false")):
            self.take()
            return _literal(token)
        if token.kind == "variable":
            self.take()
            name = token.text[1:]
            return Variable(_unescape(name[1:-1]) if name[0] in "'`" else name)
        if token.kind == "word" and token.text in _KEYWORDS - {"as", "contains", "in", "is"}:
            raise self.fail(token, "a term")
        if token.kind in ("word", "delimited", "special"):
            return self.invocation(None)
        raise self.fail(token, "a term")


_LITERAL_TOKENS = ("string", "number", "datetime", "time")


def _literal(token: _Token) -> Literal:
    """The literal a string, number, date, time or boolean (`true`/`false` word) token spells."""
    if token.kind == "string":
        return Literal(_unescape(token.text[1:-1]), "string")
    if token.kind == "number":
        if "." in token.text:
            return Literal(Decimal(token.text), "decimal")
        return Literal(int(token.text), "integer")
    if token.kind == "datetime":
        value = token.text[1:]
        return Literal(value, "dateTime" if "T" in value else "date")
    if token.kind == "time":
        return Literal(token.text[2:], "time")
    return Literal(token.text == "true", "boolean")


def parse(text: str) -> Node:
    """Parse one FHIRPath expression; FhirPathSyntaxError names the position of the first problem."""
    if not isinstance(text, str) or not text.strip():
        raise FhirPathSyntaxError(f"a FHIRPath expression must be non-empty text, got {text!r}")
    return _Parser(text).parse()
