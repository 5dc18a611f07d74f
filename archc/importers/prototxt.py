"""Protocol Buffers text format (Caffe's `.prototxt`) -> a tree of `Message`s with positions.

The grammar is our own (`prototxt.lark`, package data beside this module), so
no `caffe.proto` is vendored: the parser keeps every field as written, and
the Caffe importer gives them meaning. Every field knows its line and column,
for errors that point at it.

>>> msg = parse("name: 'LeNet'\\nlayer { name: 'ip' type: 'InnerProduct' inner_product_param { num_output: 10 } }")
>>> msg.get("name"), msg.one("layer").one("inner_product_param").get("num_output")
('LeNet', 10)
>>> msg.one("layer").field("type").line, msg.one("layer").field("type").column
(2, 20)
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass, field
from typing import Union

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archc.importers.common import ImportFailure
from archc.limits import MAX_DEPTH


class Identifier(str):
    """An unquoted value: an enum (`MAX`, `CONVOLUTION`), `true`/`false`, `inf`, `nan`."""


Value = Union[str, int, float, "Message"]


@dataclass
class Field:
    name: str
    value: Value
    line: int
    column: int  # of the field's name
    value_column: int  # of its value (the brace, for a message)


@dataclass
class Message:
    """A message: its fields in the order written (a repeated field appears once per value)."""

    fields: list[Field] = field(default_factory=list)
    line: int = 1
    column: int = 1

    def all(self, name: str) -> list[Field]:
        return [f for f in self.fields if f.name == name]

    def field(self, name: str) -> Field | None:
        """The field's last occurrence (protobuf: a repeated singular field keeps the last value)."""
        found = self.all(name)
        return found[-1] if found else None

    def get(self, name: str, default: Value | None = None) -> Value | None:
        f = self.field(name)
        return default if f is None else f.value

    def values(self, name: str) -> list[Value]:
        return [f.value for f in self.all(name)]

    def one(self, name: str) -> Message:
        """The sub-message `name`, or an empty one (protobuf's default) when absent."""
        f = self.field(name)
        if f is None:
            return Message(line=self.line, column=self.column)
        if not isinstance(f.value, Message):
            raise TypeError(name)
        return f.value

    def names(self) -> list[str]:
        return [f.name for f in self.fields]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            digits = body[i + 1 : i + 4]
            end = next((k for k, d in enumerate(digits) if d not in "01234567"), len(digits))
            if end:  # octal: \101
                out.append(chr(int(digits[:end], 8)))
                i += 1 + end
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _number(text: str) -> int | float:
    clean = text.rstrip("fF") if not text.lower().startswith(("0x", "-0x", "+0x")) else text
    try:
        return int(clean, 0)
    except ValueError:
        return float(clean)


@v_args(inline=True)
class _ToMessages(Transformer[Token, Message]):
    def string(self, *toks: Token) -> tuple[str, Token]:
        return "".join(_unquote(str(t)) for t in toks), toks[0]

    def number(self, tok: Token) -> tuple[int | float, Token]:
        return _number(str(tok)), tok

    def identifier(self, tok: Token) -> tuple[str | float, Token]:
        text = str(tok).lower()
        if text in ("inf", "infinity", "nan"):  # the text format's float words
            return float(text), tok
        return Identifier(str(tok)), tok

    def negative_identifier(self, tok: Token) -> tuple[float | str, Token]:
        text = str(tok).lower()
        if text in ("inf", "infinity", "nan"):
            return -float(text), tok
        return Identifier("-" + str(tok)), tok

    def scalar_field(self, name: Token, value: tuple[Value, Token]) -> Field:
        return Field(str(name), value[0], name.line or 1, name.column or 1, value[1].column or 1)

    def list_field(self, name: Token, *values: tuple[Value, Token] | None) -> list[Field]:
        # `dim: [10, 3]` means `dim: 10 dim: 3`
        return [
            Field(str(name), v[0], name.line or 1, name.column or 1, v[1].column or 1) for v in values if v is not None
        ]

    def message_field(self, name: Token, *fields: Field | list[Field]) -> Field:
        msg = Message(_flat(fields), name.line or 1, name.column or 1)
        return Field(str(name), msg, msg.line, msg.column, msg.column)

    def start(self, *fields: Field | list[Field]) -> Message:
        return Message(_flat(fields))


def _flat(fields: tuple[Field | list[Field], ...]) -> list[Field]:
    out: list[Field] = []
    for f in fields:
        out.extend(f if isinstance(f, list) else [f])
    return out


@functools.cache
def _parser() -> Lark:
    grammar = importlib.resources.files("archc.importers").joinpath("prototxt.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", transformer=_ToMessages())


def parse(text: str, path: str = "<string>") -> Message:
    """The top-level message of a prototxt; a syntax error is an `ImportFailure` at its line and column."""
    _check_nesting(text, path)  # before the parse: the tree and its reprs recurse once per level
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, path) from None
    assert isinstance(tree, Message)
    return tree


def _check_nesting(text: str, path: str) -> None:
    """Messages nested past `MAX_DEPTH` (a spec's own nesting limit) are refused at the brace that crosses it."""
    depth = 0
    try:
        for tok in _parser().lex(text):
            if tok.type in ("LBRACE", "LESSTHAN"):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ImportFailure.at(
                        path, text, tok.line or 1, tok.column or 1,
                        f"messages nest more than {MAX_DEPTH} deep",
                        "a Caffe model nests a few levels (layer { convolution_param { ... } })",
                    )
            elif tok.type in ("RBRACE", "MORETHAN"):
                depth -= 1
    except UnexpectedInput:
        return  # a syntax error: the parse reports it, located


def _syntax_error(exc: UnexpectedInput, text: str, path: str) -> ImportFailure:
    line, column = max(exc.line, 1), max(exc.column, 1)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        return ImportFailure.at(path, text, line, column, "the file ends inside a message", "a '}' is missing")
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        return ImportFailure.at(
            path, text, line, column, f"unexpected character {char!r}", "is this a Caffe .prototxt (text format)?"
        )
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if tok.type == "RBRACE" or str(tok) == "}":
        message, hint = "unexpected '}'", "a '{' is missing, or there is one '}' too many"
    else:
        message, hint = f"unexpected {str(tok)!r}", "expected `name: value` or `name { ... }`"
    return ImportFailure.at(path, text, line, column, message, hint, width=max(len(str(tok)), 1))
