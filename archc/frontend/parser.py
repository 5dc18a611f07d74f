"""Text -> syntax tree (`archc.frontend.syntax`), with human syntax errors.

The grammar is package data (`archc/frontend/arch.lark`, shipped in the wheel), parsed by lark's LALR(1) parser with the
Transformer run inline, so no parse tree is ever built -- it never leaves
this module. The one parse serves the elaborator and `archc fmt` alike: the
syntax tree keeps what printing the file again needs (texts as written,
parentheses, braces, comments). Syntax errors are labelled from examples, the way lark's `match_examples`
labels errors in its own grammar (see `_example_states`). The parse is one
pass: after an error the rest of the statement is skipped and the parser's
stack unwound to where a statement may start (`_Recovery`), so independent
syntax errors are all reported without parsing the file again, and each
skipped statement becomes an error node of the tree (`syntax_tree`).

Limits (`archc.limits`) are enforced here, where the text is read: a number
is an exact integer or a finite float of at most `MAX_NUMBER` (E121), a size
written in a shape at most `MAX_DIM`, and braces and parentheses nest at most
`MAX_DEPTH` deep (E142).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import threading
from decimal import Decimal
from typing import Any, NamedTuple

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from lark.parsers.lalr_analysis import Shift

from archc.diagnostics import MAX_SHOWN, Diagnostic, Note, did_you_mean, error, source_lines
from archc.frontend import syntax as S
from archc.ir import Span
from archc.limits import MAX_DEPTH, MAX_DIM, MAX_NUMBER, MIN_MAGNITUDE

MAX_SYNTAX_ERRORS = MAX_SHOWN  # past this, the parse stops (a file of garbage is not read to its end)
_SI = {"K": 3, "M": 6, "G": 9}


def grammar_text() -> str:
    """The grammar, package data beside this module."""
    return importlib.resources.files("archc.frontend").joinpath("arch.lark").read_text(encoding="utf-8")


def span_of_token(tok: Token) -> Span:
    line = tok.line or 1
    col = tok.column or 1
    end_line = tok.end_line or line
    end_col = tok.end_column or col + max(1, len(str(tok)))
    return Span(line=line, column=col, end_line=end_line, end_column=end_col)


class NumberError(ValueError):
    """A number the lexer admits but archc cannot represent exactly (too large, too small)."""


_NUMBER_PARTS = re.compile(r"(?P<whole>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?:[eE](?P<exp>[+-]?[0-9]+))?(?P<si>[KMG]?)")


def parse_number(text: str) -> int | float:
    """`4_096` -> 4096, `34.8K` -> 34800, `1e-4` -> 0.0001; NumberError beyond archc's bounds.

    A number is an exact integer or a finite float: at most `MAX_NUMBER` (1e18),
    and when not 0 at least `MIN_MAGNITUDE` (1e-300). The bounds are checked on
    the digits as written, before any value is built: `1e999999999K` is refused
    in microseconds, where building it would take hours.

    >>> parse_number("27.55M"), parse_number("1e-4"), parse_number("0")
    (27550000, 0.0001, 0)
    >>> try:
    ...     parse_number("1e400K")
    ... except NumberError as exc:
    ...     print(exc)
    1e400K is more than 1e18
    """
    clean = text.replace("_", "")
    if clean.isdigit() and len(clean) <= 18:  # the common case, `96` or `4_096`: exact and in range
        return int(clean)
    m = _NUMBER_PARTS.fullmatch(clean)
    if m is None:  # pragma: no cover - the lexer admits only numbers
        raise NumberError(f"{_clipped(text)} is not a number")
    whole, frac, si = m.group("whole"), m.group("frac") or "", m.group("si")
    too_large = NumberError(f"{_clipped(text)} is more than 1e18")
    too_small = NumberError(f"{_clipped(text)} is less than 1e-300 (it would round to 0)")
    written_as_float = "." in clean or m.group("exp") is not None
    if not (whole + frac).strip("0"):  # zero, whatever its exponent
        return 0.0 if written_as_float and not si else 0
    exp_text = m.group("exp") or "0"
    if len(exp_text.lstrip("+-").lstrip("0")) > 6:  # beyond 1e999999 either way: no int() of it
        raise too_small if exp_text.startswith("-") else too_large
    # the power of ten of the leading digit, as written
    significant = whole.lstrip("0")
    lead = len(significant) - 1 if significant else -(len(frac) - len(frac.lstrip("0")) + 1)
    magnitude = lead + int(exp_text) + _SI.get(si, 0)
    if magnitude > 18:
        raise too_large
    if magnitude < -300:
        raise too_small
    value = Decimal(clean[: len(clean) - len(si)]).scaleb(_SI.get(si, 0))
    if abs(value) > MAX_NUMBER:
        raise too_large
    if value == value.to_integral_value() and (si or not written_as_float):
        return int(value)
    as_float = float(value)
    if value != 0 and abs(as_float) < MIN_MAGNITUDE:
        raise too_small
    return as_float


def parse_dims(text: str) -> tuple[int, ...]:
    """`227x227x3` -> (227, 227, 3); NumberError for a size over `MAX_DIM` (2^31-1).

    >>> parse_dims("227 x 227 x 3")
    (227, 227, 3)
    """
    parts = [p.replace("_", "").strip() for p in text.replace("×", "x").split("x")]
    for part in parts:
        if len(part.lstrip("0")) > 10 or int(part) > MAX_DIM:  # no int() of 4,301 digits
            raise NumberError(f"a size must be at most 2^31-1 ({MAX_DIM:,}), not {_clipped(part)}")
    return tuple(int(p) for p in parts)


def _clipped(text: str, width: int = 24) -> str:
    """A long literal, shortened for a message: `99999999999...(4301 digits)`."""
    return text if len(text) <= width else f"{text[:12]}...({len(text)} characters)"


class _Found(threading.local):
    """Problems the transformer finds while the parse runs (one list per thread)."""

    numbers: list[Diagnostic]

    def __init__(self) -> None:
        self.numbers = []


_FOUND = _Found()


def _number_problem(tok: Token, message: str, hint: str | None = None) -> None:
    _FOUND.numbers.append(error("E121", message, span_of_token(tok), hint))


_NUMBER_HINT = "numbers are at most 1e18, and sizes at most 2^31-1 (2,147,483,647)"


def _number(tok: Token) -> tuple[int | float, str]:
    """A number token's value and text; out of range, an E121 and a harmless `0` in its place
    (the later stages still run on the tree of a spec with errors, and must not meet it)."""
    try:
        return parse_number(str(tok)), str(tok)
    except NumberError as exc:
        _number_problem(tok, f"number out of range: {exc}", _NUMBER_HINT)
        return 0, "0"


def _dims(tok: Token) -> tuple[tuple[int, ...], str]:
    """A shape token's sizes and text; over MAX_DIM, an E121 and ones in its place."""
    try:
        return parse_dims(str(tok)), str(tok)
    except NumberError as exc:
        _number_problem(tok, str(exc), _NUMBER_HINT)
        ones = (1,) * (str(tok).count("x") + str(tok).count("×") + 1)
        return ones, "x".join("1" for _ in ones)


@v_args(inline=True)
class _ToSyntax(Transformer[Token, S.Program]):
    """One method per grammar rule; returns `archc.frontend.syntax` nodes."""

    # expressions
    def number(self, tok: Token) -> S.Number:
        return S.Number(*_number(tok), span_of_token(tok))

    def dims(self, tok: Token) -> S.Dims:
        return S.Dims(*_dims(tok), span_of_token(tok))

    def paren(self, expr: S.Expr) -> S.Expr:
        return expr._replace(parens=expr.parens + 1)

    def ref(self, tok: Token) -> S.Ref:
        return S.Ref(str(tok), span_of_token(tok))

    def _bin(self, op: str, left: S.Expr, right: S.Expr) -> S.BinOp:
        span = Span(
            line=left.span.line,
            column=left.span.column,
            end_line=right.span.end_line,
            end_column=right.span.end_column,
        )
        return S.BinOp(op, left, right, span)

    def add(self, a: S.Expr, b: S.Expr) -> S.BinOp:
        return self._bin("+", a, b)

    def sub(self, a: S.Expr, b: S.Expr) -> S.BinOp:
        return self._bin("-", a, b)

    def mul(self, a: S.Expr, b: S.Expr) -> S.BinOp:
        return self._bin("*", a, b)

    def floordiv(self, a: S.Expr, b: S.Expr) -> S.BinOp:
        return self._bin("//", a, b)

    def truediv(self, a: S.Expr, _slash: Token, b: S.Expr) -> S.BinOp:
        return self._bin("/", a, b)

    def neg(self, a: S.Expr) -> S.Neg:
        return S.Neg(a, a.span)

    # pieces
    def label(self, tok: Token) -> S.Label:
        return S.Label(str(tok), span_of_token(tok))

    def shape(self, tok: Token) -> S.ShapeLit:
        if tok.type == "DIMS":
            return S.ShapeLit(*_dims(tok), span_of_token(tok))
        value, text = _number(tok)
        if isinstance(value, float):  # `-> 1e3` said "the spec says -1"
            whole = f"; write {int(value)}" if value.is_integer() else ""
            _number_problem(tok, f"a size is a whole number, and {tok} is written as a float", f"sizes are written 1000 or 4K{whole}")
            value, text = 1, "1"
        elif value > MAX_DIM:
            _number_problem(tok, f"a size must be at most 2^31-1 ({MAX_DIM:,}), not {value:,}", _NUMBER_HINT)
            value, text = 1, "1"
        return S.ShapeLit((value,), text, span_of_token(tok))

    def arrow(self, shape: S.ShapeLit) -> S.ShapeLit:
        return shape

    def positional(self, expr: S.Expr) -> S.Expr:
        return expr

    def keyword(self, key: Token, _eq: Token, expr: S.Expr) -> S.KeyArg:
        return S.KeyArg(str(key), expr, span_of_token(key))

    def keyword_path(self, key: Token, _eq: Token, path: Token) -> S.KeyArg:
        return S.KeyArg(str(key), S.Ref(str(path), span_of_token(path)), span_of_token(key))

    def body(self, opening: Token, *rest: Any) -> _Body:
        return _Body(rest[:-1], S.Braces(span_of_token(opening), span_of_token(rest[-1])))

    def param(self, name: Token, _eq: Token | None = None, default: S.Expr | None = None) -> S.Param:
        return S.Param(str(name), default, span_of_token(name))

    def block_params(self, *params: S.Param | None) -> tuple[S.Param, ...]:
        return tuple(p for p in params if p is not None)

    def shortcut_clause(self, kw: Token, body: _Body) -> _Clause:
        return _Clause(span_of_token(kw), body)

    def tolerance(self, pm: Token, num: Token, pct: Token | None = None) -> _Tolerance:
        value, text = _number(num)
        return _Tolerance(float(value), pct is not None, str(pm), text)

    # statements
    def start(self, *items: S.Stmt) -> S.Program:
        return S.Program(items)

    def network_decl(self, name: Token) -> S.NetworkDecl:
        return S.NetworkDecl(str(name), span_of_token(name))

    def input_decl(self, kw: Token, shape: S.ShapeLit, unit: Token | None = None) -> S.InputDecl:
        word = None if unit is None else S.Label(str(unit), span_of_token(unit))
        return S.InputDecl(shape, span_of_token(kw), word)

    def layer(self, *children: Any) -> S.LayerStmt:
        label, rest = _take_label(children)
        kind_tok: Token = rest[0]
        arrow = rest[-1] if len(rest) > 1 and isinstance(rest[-1], S.ShapeLit) else None
        args = rest[1 : len(rest) - (arrow is not None)]
        positional = tuple(a for a in args if not isinstance(a, S.KeyArg))
        keywords = tuple(a for a in args if isinstance(a, S.KeyArg))
        return S.LayerStmt(label, str(kind_tok), positional, keywords, arrow, span_of_token(kind_tok))

    def block_def(self, name: Token, *rest: Any) -> S.BlockDef:
        params: tuple[S.Param, ...] = rest[0] if len(rest) == 2 else ()
        body: _Body = rest[-1]
        return S.BlockDef(str(name), params, body.statements, span_of_token(name), body.braces)

    def repeat(self, *children: Any) -> S.Repeat:
        label, (kw, count, body, *arrow) = _take_label(children)
        return S.Repeat(
            label, count, body.statements, arrow[0] if arrow else None, _stmt_span(kw, label), body.braces
        )

    repeat_arrow = repeat

    def residual(self, *children: Any) -> S.Residual:
        label, (kw, body, *extras) = _take_label(children)
        clause: _Clause | None = None
        arrow = None
        for extra in extras:
            if isinstance(extra, S.ShapeLit):
                arrow = extra
            else:
                clause = extra
        return S.Residual(
            label,
            body.statements,
            clause.body.statements if clause else None,
            arrow,
            _stmt_span(kw, label),
            body.braces,
            clause.keyword if clause else None,
            clause.body.braces if clause else None,
        )

    residual_arrow = residual

    def shortcut(self, kw: Token, body: _Body) -> S.Shortcut:
        return S.Shortcut(body.statements, span_of_token(kw), body.braces)

    def merge(self, *children: Any) -> S.Concat:
        label, (kw, body, *arrow) = _take_label(children)
        return S.Concat(
            label, body.statements, arrow[0] if arrow else None, _stmt_span(kw, label), body.braces, str(kw)
        )

    merge_arrow = merge

    def branch(self, kw: Token, body: _Body) -> S.Branch:
        return S.Branch(body.statements, span_of_token(kw), body.braces)

    def expect_stmt(self, target: Token, cmp: Token, value: Token, tol: _Tolerance | None = None) -> S.Expect:
        parts = str(target).split(".")
        v: S.Number | S.Dims
        if value.type == "DIMS":
            v = S.Dims(*_dims(value), span_of_token(value))
        else:
            v = S.Number(*_number(value), span_of_token(value))
        op = "=" if str(cmp) == "==" else str(cmp)
        return S.Expect(
            tuple(parts[:-1]),
            parts[-1],
            op,
            v,
            tol.value if tol else None,
            tol.percent if tol else False,
            span_of_token(target),
            span_of_token(value),
            str(cmp),
            tol.sign if tol else None,
            tol.text if tol else None,
        )


class _Body(NamedTuple):
    statements: tuple[S.Stmt, ...]
    braces: S.Braces


class _Clause(NamedTuple):
    """`shortcut { ... }` right after a residual's body."""

    keyword: Span
    body: _Body


class _Tolerance(NamedTuple):
    value: float
    percent: bool
    sign: str  # as written
    text: str  # the number as written


def _take_label(children: Any) -> tuple[S.Label | None, list[Any]]:
    items = list(children)
    if items and isinstance(items[0], S.Label):
        return items[0], items[1:]
    return None, items


def _stmt_span(keyword: Token, label: S.Label | None) -> Span:
    """A compound statement is located at its name if it has one, else its keyword."""
    return label.span if label is not None else span_of_token(keyword)


@functools.cache
def _parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="basic",  # one regex for the whole grammar: cheaper start-up than "contextual"
        maybe_placeholders=False,
        transformer=_ToSyntax(),
        cache=True,
    )


# --- syntax errors ---------------------------------------------------------------
# Label -> snippets that fail at the same parser state (lark's match_examples).
_SYNTAX_EXAMPLES: dict[str, list[str]] = {
    "missing value after '='": [
        "conv K=96 F=\n",
        "conv K=\n",
        "conv K=96 F= S=4\n",
        "conv K= ;\n",
    ],
    # (`conv K=96 F=3 ->` at the end of the file was listed under "missing value
    # after '='" above, which mislabelled every `->` that ends a file.)
    "missing shape after '->'": ["relu ->\n", "conv K=3 F=3 ->\n", "relu -> ;\n", "relu -> x\n", "relu ->"],
    "'input' needs a shape such as 227x227x3 (or N for a flat vector)": [
        "input\n",
        "input foo\n",
        "input ;\n",
    ],
    "'expect' needs a quantity, a comparison and a value, e.g. `expect params = 28_823_912`": [
        "expect\n",
        "expect params\n",
        "expect params 5\n",
        "expect params =\n",
        "expect params = foo\n",
        "expect conv1.params\n",
        "expect conv1.params 5\n",
        "expect conv1.params =\n",
    ],
    "a tolerance needs a number, e.g. `± 5%`": ["expect params = 5 ±\n", "expect params = 5 +- %\n"],
    "missing '{' to open the body": [
        "repeat 2\n",
        "repeat 2 relu\n",
        "block B\n",
        "block B(K)\n",
        "residual\n",
        "residual relu\n",
        "concat\n",
        "add\n",
        "multiply\n",
        "branch\n",
        "shortcut\n",
        "block B relu\n",
    ],
    "missing the layer kind after the name": ["conv1:\n", "conv1: -> 3\n", "conv1: ;\n"],
    "two statements on one line: separate them with a newline or ';'": [
        "relu -> 3 relu\n",
        "relu -> 3x3x3 relu\n",
        "input 3 relu\n",
        "input 3x3x3 relu\n",
        "network A relu\n",
        "expect params = 5 relu\n",
        "expect params = 5 ± 1% relu\n",
    ],
    "'}' without a matching '{'": ["}\n", "relu }\n", "relu\n}\n"],
    "block parameters are names with optional defaults, e.g. `block Basic(K, S=1)`": [
        "block B(\n",
        "block B(K\n",
        "block B(K S)\n",
        "block B(1)\n",
        "block B(K=)\n",
    ],
    "'repeat' needs a count, e.g. `repeat 2 { ... }`": ["repeat {\n", "repeat\n"],
    "'network' needs a name": ["network\n", "network 3\n"],
}

_HINTS = {
    "missing value after '='": "write a value after '=', e.g. F=3 or P=same",
    "missing shape after '->'": "write the expected output shape, e.g. -> 55x55x96, or drop the '->'",
    "missing '{' to open the body": "compound statements take a body in braces: repeat 2 { ... }",
    "two statements on one line: separate them with a newline or ';'": "e.g. `conv K=96 F=11; relu`",
}


def _describe_terminal(parser: Lark, name: str) -> str:
    pretty = {
        "NAME": "a name",
        "NUMBER": "a number",
        "DIMS": "a shape such as 3x3",
        "PATH": "a dotted name",
        "CMP": "a comparison (= < <= > >=)",
        "EQUAL": "'='",
        "_NL": "a newline",
        "$END": "the end of the file",
        "PLUSMINUS": "'±'",
        "PERCENT": "'%'",
    }
    if name in pretty:
        return pretty[name]
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value}'" if isinstance(pattern, PatternStr) else name


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return f"'{tok}'"


def _open_braces(text: str) -> list[tuple[int, int]]:
    """Line and column of each `{` that no `}` closes, outermost first (comments skipped)."""
    stack: list[tuple[int, int]] = []
    for lineno, text_line in enumerate(source_lines(text), start=1):
        for col, ch in enumerate(text_line.split("#", 1)[0], start=1):
            if ch == "{":
                stack.append((lineno, col))
            elif ch == "}" and stack:
                stack.pop()
    return stack


def _unclosed_brace(text: str) -> Span | None:
    stack = _open_braces(text)
    if not stack:
        return None
    line, col = stack[-1]
    return Span(line=line, column=col, end_line=line, end_column=col + 1)


def _syntax_diagnostic(exc: UnexpectedInput, text: str) -> Diagnostic:
    parser = _parser()
    if isinstance(exc, UnexpectedCharacters):
        span = Span(
            line=exc.line, column=exc.column, end_line=exc.line, end_column=exc.column + 1
        )
        pos = exc.pos_in_stream  # always set for UnexpectedCharacters; typed Optional by lark
        ch = text[pos] if pos is not None and pos < len(text) else "?"
        typo = _character_typo(text, pos or 0, span)
        if typo is not None:
            return typo
        hint = None
        if ch == "/":
            hint = "integer division is written //"
        elif ch.isdigit() or ch == ".":
            hint = "numbers are written 96, 4_096, 0.5, 1e-4 or 27.55M; shapes 55x55x96"
        shown = f"'{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"  # never a raw escape on the terminal
        return error("E001", f"unexpected character {shown}", span, hint)
    tok: Token | None = getattr(exc, "token", None)
    at_end = isinstance(exc, UnexpectedEOF) or (tok is not None and tok.type == "$END")
    if at_end:
        brace = _unclosed_brace(text)
        if brace is not None:
            return error("E002", "unclosed '{'", brace, "add the matching '}'")
        lines = source_lines(text)
        if len(lines) > 1 and not lines[-1]:  # a final newline ends the last line, starts none
            lines.pop()
        last = len(lines)
        span = Span(
            line=last, column=len(lines[-1]) + 1, end_line=last, end_column=len(lines[-1]) + 2
        )
        # A file that stops mid-statement (`relu ->` with no newline after it)
        # is the same mistake as one that stops mid-line: label it the same way.
        label = _match_label(exc)
        if label:
            return error("E001", f"{label} (found end of file)", span, _HINTS.get(label))
        return error("E001", "unexpected end of file", span)
    assert tok is not None
    span = span_of_token(tok)
    typo = _token_typo(text, tok)
    if typo is not None:
        return typo
    if str(tok) == "," and _digit_around(text, tok):
        return error(
            "E001",
            "numbers group their digits with '_', not ','",
            span,
            f"write {_digits_around(text, tok).replace(',', '_')}",
        )
    if str(tok) == ":":
        keyword = _keyword_label(text, tok)
        if keyword is not None:
            return keyword
    if tok.type == "_NL":
        span = Span(
            line=span.line, column=span.column, end_line=span.line, end_column=span.column + 1
        )
    label = _match_label(exc)
    expected = sorted(
        {_describe_terminal(parser, t) for t in getattr(exc, "expected", set()) or set()}
    )
    generic = f"unexpected {_describe_token(tok)}"
    if label == _MISSING_VALUE:
        missing = _missing_value(text, span)
        if missing is not None:
            return missing
    if label == _MISSING_BRACE:
        unbraced = _body_without_braces(text, tok)
        if unbraced is not None:
            return unbraced
    if label:
        msg = f"{label} (found {_describe_token(tok)})"
        return error("E001", msg, span, _HINTS.get(label))
    hint = f"expected {', '.join(expected[:-1]) + ' or ' if len(expected) > 1 else ''}{expected[-1]}" if expected else None
    if tok.type == "SLASH":
        hint = "integer division is written //"
    if str(tok) == "*" and tok.start_pos is not None and tok.start_pos > 0 and text[tok.start_pos - 1] == "*":
        hint = "archc's arithmetic has + - * // and parentheses, no power: write the number (4) or a product (2*2)"
        span = Span(line=span.line, column=span.column - 1, end_line=span.line, end_column=span.column + 1)
        generic = "unexpected '**'"
    return error("E001", generic, span, hint)


_MISSING_VALUE = "missing value after '='"
_MISSING_BRACE = "missing '{' to open the body"
_COMPARISONS = {"≥": ">=", "≤": "<=", "≠": "!=", "⩾": ">=", "⩽": "<="}
_SHAPE_WRITTEN = re.compile(r"[0-9_]+(?:\s*[xX×]\s*[0-9_]+)+")
_CALL_IN_PARENS = re.compile(r"\b([A-Za-z_]\w*)\(([^()]*=[^()]*)\)")


def _character_typo(text: str, pos: int, span: Span) -> Diagnostic | None:
    """A character no token takes, that is a known slip: `≥` for `>=`, `55X55X96` for `55x55x96`."""
    ch = text[pos] if pos < len(text) else ""
    if ch in _COMPARISONS and _COMPARISONS[ch] != "!=":
        return error(
            "E001",
            f"unexpected character '{ch}': comparisons are written with ASCII characters",
            span,
            f"did you mean '{_COMPARISONS[ch]}'?",
        )
    shape = _SHAPE_WRITTEN.match(text, pos)
    if shape is not None and "X" in shape.group():
        fixed = re.sub(r"\s*X\s*", "x", shape.group())
        where = Span(span.line, span.column, span.line, span.column + len(shape.group()))
        return error("E001", "a shape is written with a lower-case x", where, f"did you mean '{fixed}'?")
    return None


def _line_before(text: str, tok: Token) -> str:
    """The text of a token's line before it."""
    assert tok.line is not None and tok.column is not None
    return source_lines(text)[tok.line - 1][: tok.column - 1]


def _token_typo(text: str, tok: Token) -> Diagnostic | None:
    """An unexpected token that is a known slip: a `//` comment, a call written `B(K=16)`."""
    if tok.line is None or tok.column is None or tok.type in ("$END", "_NL"):
        return None
    before = _line_before(text, tok)
    # `// the stem`: a `//` where no division can be, or one that what follows it on the line
    # could not continue (the first unexpected word of `relu // the activation`)
    slashes = tok.column - 1 if str(tok) == "//" else before.find(" //") + 1 if " //" in before else -1
    if slashes >= 0 and "#" not in before[:slashes]:
        comment = source_lines(text)[tok.line - 1][slashes + 2 :].strip()
        where = Span(tok.line, slashes + 1, tok.line, slashes + 3)
        return error("E001", "comments start with '#', not '//'", where, f"write # {comment}" if comment else "write #")
    call = _CALL_IN_PARENS.search(before + str(tok) + source_lines(text)[tok.line - 1][tok.column - 1 + len(str(tok)) :])
    if call is not None and not before.lstrip().startswith("block"):
        start = call.start(1) + 1
        where = Span(tok.line, start, tok.line, call.end() + 1)
        args = " ".join(a.strip() for a in call.group(2).split(","))
        return error(
            "E001",
            f"a block call takes no parentheses: `{call.group(1)}({call.group(2)})`",
            where,
            f"did you mean '{call.group(1)} {args}'?",
        )
    return None


def comment_slips(diags: list[Diagnostic], text: str) -> list[Diagnostic]:
    """`conv K=8 F=3 // stem` parses (`3 // stem` divides), and fails later (E110, E120):
    such an error on a line with a spaced ` //` before its end says what the `//` was meant as."""
    lines = source_lines(text)
    out = []
    for d in diags:
        line = lines[d.span.line - 1] if d.span is not None and d.code in ("E110", "E120") and d.span.line <= len(lines) else ""
        at = line.find(" //") + 1
        if at and d.span is not None and d.span.end_column > at + 1 and "#" not in line[:at]:
            d = d._replace(hint=f"comments start with '#', not '//': write # {line[at + 2 :].strip()}")
        out.append(d)
    return out


def _body_without_braces(text: str, tok: Token) -> Diagnostic | None:
    """`residual` alone on its line, its layers below it: the keyword is the mistake, not the
    first layer of its body, which is where the parser stops."""
    lines = source_lines(text)
    if tok.line is None or tok.line < 2:
        return None
    for number in range(tok.line - 1, 0, -1):
        words = lines[number - 1].split("#", 1)[0].split()
        if not words:
            continue
        keyword = words[-1] if words[-1] in _BODY_KEYWORDS else None
        if keyword is None:
            return None
        col = lines[number - 1].rindex(keyword) + 1
        where = Span(number, col, number, col + len(keyword))
        return error(
            "E001",
            f"'{keyword}' needs its body in braces",
            where,
            f"write `{keyword} {{` here and `}}` after the body's last line",
        )
    return None


_BODY_KEYWORDS = ("residual", "shortcut", "concat", "add", "multiply", "branch")
_STRAY_BRACE = "'}' without a matching '{'"
KEYWORDS = (
    "network", "input", "block", "repeat", "residual", "shortcut", "concat", "add", "multiply", "branch", "expect"
)


def _keyword_label(text: str, colon: Token) -> Diagnostic | None:
    """`repeat: repeat 2 { ... }`: a keyword used as a name, said plainly."""
    assert colon.line is not None and colon.column is not None
    before = source_lines(text)[colon.line - 1][: colon.column - 1]
    word = before.split(";")[-1].strip()
    if word not in KEYWORDS:
        return None
    start = before.rindex(word) + 1
    span = Span(line=colon.line, column=start, end_line=colon.line, end_column=start + len(word))
    return error(
        "E001",
        f"'{word}' is a keyword and cannot name a layer",
        span,
        f"choose another name, e.g. '{word}1' or '{word}_'",
    )


def _missing_value(text: str, span: Span) -> Diagnostic | None:
    """`F= S=4` parses as `F=S` and then fails at the second '=': blame `F=`.

    Names the key and puts the caret where its value belongs, rather than
    under the '=' of the next key.
    """
    lines = source_lines(text)
    if not 1 <= span.line <= len(lines):
        return None
    before = lines[span.line - 1][: span.column - 1]
    m = re.search(r"([A-Za-z_]\w*)=(\s*)(?:[A-Za-z_]\w*\s*)?$", before)
    if m is None:
        return None
    col = m.start(2) + 1
    where = Span(line=span.line, column=col, end_line=span.line, end_column=col + 1)
    return error("E001", f"missing value after '{m.group(1)}='", where, _HINTS[_MISSING_VALUE])


def _digit_around(text: str, tok: Token) -> bool:
    pos = tok.start_pos or 0
    return 0 < pos < len(text) - 1 and text[pos - 1].isdigit() and text[pos + 1].isdigit()


def _digits_around(text: str, tok: Token) -> str:
    """The whole number written with commas around `tok`: `28,823,912`."""
    pos = tok.start_pos or 0
    start, end = pos, pos
    while start > 0 and (text[start - 1].isdigit() or text[start - 1] in ",_"):
        start -= 1
    while end < len(text) and (text[end].isdigit() or text[end] in ",_"):
        end += 1
    return text[start:end]


def _bare_parse(text: str) -> Any:
    return _parser().parse(text)


@functools.cache
def _example_states() -> tuple[dict[tuple[Any, str], str], dict[Any, str]]:
    """Parser state (and token type) -> label, from failing each example once.

    lark's `UnexpectedInput.match_examples` compares whole parser states, and
    its `ParserState.__eq__` includes the stack depth: an example written at the
    top level then never matches the same mistake on line 2 or inside a body
    (the depth grows with each statement before it). The LALR state on top of
    the stack alone says where in the grammar the parser is, so match on that,
    preferring an example that failed on the same kind of token. Built once,
    so labelling an error costs a lookup, not a re-parse of every example.
    """
    exact: dict[tuple[Any, str], str] = {}
    by_state: dict[Any, str] = {}
    for label, examples in _SYNTAX_EXAMPLES.items():
        for example in examples:
            try:
                _bare_parse(example)
            except UnexpectedInput as ut:
                state = getattr(ut, "state", None)
                tok = getattr(ut, "token", None)
                if state is None or tok is None:
                    continue
                exact.setdefault((state.position, tok.type), label)
                by_state.setdefault(state.position, label)
    return exact, by_state


def _match_label(exc: UnexpectedInput) -> str | None:
    state = getattr(exc, "state", None)
    tok = getattr(exc, "token", None)
    if state is None or tok is None:
        return None
    exact, by_state = _example_states()
    label = exact.get((state.position, tok.type)) or by_state.get(state.position)
    if label == _STRAY_BRACE and tok.type != "RBRACE":
        return None  # a label about a '}' says nothing of another token in the same state
    return label


class _Lexer:
    """The parse's tokens, one at a time; a character no token matches is handed out as its error."""

    def __init__(self, thread: Any, state: Any) -> None:
        self.thread = thread
        self.state = state
        self.tokens = thread.lex(state)
        self.last: Token | None = None

    def next(self) -> Token | UnexpectedCharacters | None:
        """The next token, the error for a character no token matches (then skipped), or None at the end."""
        try:
            tok: Token = next(self.tokens)
        except StopIteration:
            return None
        except UnexpectedCharacters as exc:
            self.skip_character()
            return exc
        self.last = tok
        return tok

    def skip_character(self) -> None:
        """After the lexer raised at a character no token matches: step over it, lex on."""
        lexer = self.thread.state
        pos = lexer.line_ctr.char_pos
        text = getattr(lexer.text, "text", lexer.text)  # lark's TextSlice
        lexer.line_ctr.feed(text[pos : pos + 1])
        self.tokens = self.thread.lex(self.state)

    def jump(self) -> tuple[int, int]:
        """Move past characters no token may start with, to the next `;`, brace, comment or line.

        Skipping a line of a megabyte of `@` a character at a time would raise
        (and catch) a million lexer errors.
        """
        lexer = self.thread.state
        pos = lexer.line_ctr.char_pos
        text = getattr(lexer.text, "text", lexer.text)
        found = _RESYNC.search(text, pos)
        stop = found.start() if found is not None else len(text)
        if stop > pos:
            lexer.line_ctr.feed(text[pos:stop])
            self.tokens = self.thread.lex(self.state)
        return (lexer.line_ctr.line, lexer.line_ctr.column)  # where the jump ended


_RESYNC = re.compile(r"[\n;{}#]")
_OPENERS = ("LBRACE", "LPAR")
_CLOSERS = ("RBRACE", "RPAR")
_NESTING = frozenset(_OPENERS + _CLOSERS)  # the tokens `feed` counts (and checks, for `}`)


class _Recovery:
    """Drives lark's LALR parser token by token: nesting depth, and recovery from errors in one pass.

    After a syntax error the rest of the statement is skipped (to its `;` or
    newline, over any body it opens), and the parser's stacks are unwound to
    the nearest state where a statement may begin: every state of a LALR stack
    is one the parser passed through on the text so far, so the parse goes on
    as if the broken statement had not been written, and an error node takes
    its place. A `}` that closes the enclosing body is kept. At the end of the
    text, bodies left open are closed (E002 says where one opened); when the
    parse stops early (too many errors, too deep), the rest is one error node.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = source_lines(text)
        interactive = _parser().parse_interactive(text)
        self.state = interactive.parser_state
        self.table = self.state.parse_conf.states
        self.lexer = _Lexer(interactive.lexer_thread, self.state)
        self.diags: list[Diagnostic] = []
        self.errors: list[S.ErrorStmt] = []  # the statements skipped, as error nodes
        self.depth = 0  # '{' and '(' on the parser's stack
        self.swallowed_end = False

    def error(self, exc: UnexpectedInput) -> None:
        """Report a syntax error; past MAX_SYNTAX_ERRORS, stop reading the file (`_Stop`)."""
        if len(self.diags) >= MAX_SYNTAX_ERRORS:
            last = self.diags[-1]
            note = f"archc stops reading a file after {MAX_SYNTAX_ERRORS} syntax errors; there are more"
            self.diags[-1] = last._replace(notes=(*last.notes, Note(note)))
            raise _Stop(_line_of(exc))
        self.diags.append(_syntax_diagnostic(exc, self.text))

    def run(self) -> S.Program:
        try:
            return self.parse()
        except (_TooDeep, _Stop) as stop:
            return self.finish(stop.line)

    def parse(self) -> S.Program:
        lexer, table, stack, feed_token = self.lexer, self.table, self.state.state_stack, self.state.feed_token
        while True:
            # The loop of lark's own parser, with `feed`'s checks inlined (the common path is hot).
            try:
                for tok in lexer.tokens:
                    lexer.last = tok
                    kind = tok.type
                    try:
                        if kind in _NESTING or table[stack[-1]].get(kind) is None:
                            self.feed(tok)
                        else:
                            feed_token(tok)  # it may reduce, then fail: what it reduced is the broken statement
                    except UnexpectedToken as exc:
                        self.error(exc)
                        self.skip(tok, (tok.line or 1, tok.column or 1))
                        break  # `skip` read on from the lexer: iterate afresh
                else:
                    break
            except UnexpectedCharacters as exc:
                lexer.skip_character()
                self.error(exc)
                self.skip(exc, (exc.line, exc.column))
        failed_at = self.simulate("$END")
        if failed_at is None:
            return self.end()
        end = _synthetic("$END", "", self.lexer.last)
        expected = {t for t in self.table[failed_at] if t.isupper()}
        at_end = UnexpectedToken(end, expected, state=_At(failed_at))  # type: ignore[no-untyped-call]  # lark's
        if not self.swallowed_end:
            self.error(at_end)
        # an unclosed body keeps what it holds; a statement cut off by the end is an error node
        unclosed = bool(self.diags) and self.diags[-1].code == "E002"
        return self.finish(None if unclosed or self.swallowed_end else _line_of(at_end))

    def end(self) -> S.Program:
        program: S.Program = self.state.feed_token(_synthetic("$END", "", self.lexer.last), True)
        return program

    def feed(self, tok: Token) -> None:
        """Feed a token; UnexpectedToken, with the statements on the stacks intact, if it does not fit.

        LALR's merged lookaheads let a stray `}` reduce a whole body's statements
        (`}` is what may follow a list of them) before the error shows, and
        unwinding would then drop them: a `}` that would reduce is tried on the
        state stack alone first (`simulate`). Any other token that fails reduces
        at most the statement it breaks, which unwinding drops anyway.
        """
        top = self.state.state_stack[-1]
        action = self.table[top].get(tok.type)
        if action is None:
            failed: int | None = top
        elif tok.type == "RBRACE" and action[0] is not Shift:
            failed = self.simulate("RBRACE")
        else:
            failed = None
        if failed is not None:
            expected = {t for t in self.table[failed] if t.isupper()}
            raise UnexpectedToken(tok, expected, state=_At(failed))  # type: ignore[no-untyped-call]  # lark's
        self.state.feed_token(tok)
        if tok.type in _OPENERS:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.diags.append(
                    error(
                        "E142",
                        f"nested too deeply: more than {MAX_DEPTH} levels of braces and parentheses",
                        span_of_token(tok),
                        f"a spec nests bodies and parentheses at most {MAX_DEPTH} deep; a longer "
                        "sequence is written `repeat N { ... }`",
                    )
                )
                raise _TooDeep(tok.line or 1)
        elif tok.type in _CLOSERS:
            self.depth -= 1

    def skip(self, bad: Token | UnexpectedCharacters, at: tuple[int, int]) -> None:
        """Skip the rest of the statement from `bad` (at `at`, a line and column), unwind the
        parser to a statement's start, and put an error node where the statement stood."""
        pending: Token | None = None
        end = (at[0], at[1] + 1)
        if isinstance(bad, Token) and bad.type == "RBRACE":
            pending = bad  # `}` after a broken statement still closes its body
        else:
            balance = 0
            item: Token | UnexpectedCharacters | None = bad
            while True:
                if isinstance(item, Token):
                    if item.type not in ("_NL", "SEMICOLON"):
                        end = (item.end_line or end[0], item.end_column or end[1])
                    if item.type == "LBRACE":
                        balance += 1
                    elif item.type == "RBRACE":
                        if balance == 0:
                            pending = item
                            break
                        balance -= 1
                    elif item.type in ("_NL", "SEMICOLON") and balance == 0:
                        break
                elif item is not None:  # a character no token matches: jump over the rest of them
                    end = self.lexer.jump()
                item = self.lexer.next()
                if item is None:
                    # the skipped statement opened a body that never closes: that error
                    # is the one reported, not a second "unclosed '{'" at the end
                    self.swallowed_end = balance > 0
                    break
        start = min(at, self.unwind())
        self.errors.append(S.ErrorStmt(Span(start[0], start[1], *max(end, start))))
        if pending is not None and self.accepts("RBRACE"):
            self.feed(pending)  # else: a `}` that closes nothing, dropped

    def accepts(self, token_type: str) -> bool:
        """Whether the parser would take a token of this type (`$END`: whether the text may end here)."""
        return self.simulate(token_type) is None

    def simulate(self, token_type: str) -> int | None:
        """Feed a token of this type to a copy of the state stack, reductions done without their
        callbacks: None if it would be taken, else the state where it would fail.

        A token LALR's merged lookaheads let in can reduce what is on the stack
        before the error shows, and lark's callbacks reuse the lists of the
        values they reduce: a failed feed cannot be undone, so it is tried here.
        """
        base = self.state.state_stack  # read, never changed: the simulated stack is base[:depth] + extra
        depth, extra = len(base), list[int]()
        end_state = self.state.parse_conf.end_state
        table = self.table
        while True:
            top = extra[-1] if extra else base[depth - 1]
            action = table[top].get(token_type)
            if action is None:
                failed: int = top
                return failed
            kind, rule = action
            if kind is Shift:
                return None
            size = len(rule.expansion)
            if size:
                from_extra = min(size, len(extra))
                del extra[len(extra) - from_extra :]
                depth -= size - from_extra
            top = extra[-1] if extra else base[depth - 1]
            extra.append(table[top][rule.origin.name][1])
            if token_type == "$END" and extra[-1] == end_state:
                return None

    def unwind(self) -> tuple[int, int]:
        """Pop the parser's stacks to the nearest state where a statement may begin;
        return where what was popped begins (line, column; far away if nothing was)."""
        states, values = self.state.state_stack, self.state.value_stack
        first = _FAR
        while len(states) > 1 and "NETWORK" not in self.table[states[-1]]:
            states.pop()
            value = values.pop()
            if isinstance(value, Token) and value.type in _OPENERS:
                self.depth -= 1
            first = min(first, _first_position(value))
        return first

    def finish(self, rest_from: int | None) -> S.Program:
        """The tree of what parsed: the bodies left open closed, and from `rest_from` (a line)
        to the end one error node."""
        first = self.unwind()
        if rest_from is not None:
            start = min(first, (rest_from, 1))
            if start == (rest_from, 1):  # from the first code of that line
                start = (rest_from, _code_span(self.lines, rest_from, rest_from).column)
            last_line = max(start[0], _last_code_line(self.lines))
            end = _code_span(self.lines, last_line, last_line)
            self.errors.append(S.ErrorStmt(Span(start[0], start[1], end.end_line, end.end_column)))
        brace = _synthetic("RBRACE", "}", self.lexer.last)
        for _ in range(MAX_DEPTH + 2):  # one `}` for each body still open
            if self.accepts("$END"):
                return self.end()
            if not self.accepts("RBRACE"):
                break
            self.state.feed_token(brace)
        return S.Program(())  # pragma: no cover - closing every body always ends the parse


def _synthetic(kind: str, text: str, after: Token | None) -> Token:
    """A token the text lacks (the end, a `}` closing what the text left open), placed at its last token."""
    return Token.new_borrow_pos(kind, text, after) if after is not None else Token(kind, text, 0, 1, 1)


class _At(NamedTuple):
    """Where a token would fail, as `_match_label` reads lark's parser state: its `position`."""

    position: int


def _line_of(exc: UnexpectedInput) -> int:
    tok = getattr(exc, "token", None)
    return (tok.line if tok is not None and tok.line else None) or getattr(exc, "line", None) or 1


_FAR = (1 << 62, 1)


def _first_position(value: Any) -> tuple[int, int]:
    """Where something on the parser's value stack begins (line, column; `_FAR` if it does not say)."""
    if isinstance(value, Token):
        return (value.line, value.column or 1) if value.line else _FAR
    span = getattr(value, "span", None)
    if isinstance(span, Span):
        return (span.line, span.column)
    if isinstance(value, _Body):
        return (value.braces.open.line, value.braces.open.column)
    if isinstance(value, _Clause):
        return (value.keyword.line, value.keyword.column)
    children = getattr(value, "children", value)  # lark's Tree of an inlined rule, or a tuple
    if isinstance(children, (tuple, list)):
        return min((_first_position(v) for v in children), default=_FAR)
    return _FAR


class _TooDeep(Exception):
    """Nesting past MAX_DEPTH: the parse stops (E142 is recorded)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Stop(Exception):
    """Too many syntax errors: the parse stops (a note on the last says so)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class Parsed(NamedTuple):
    program: S.Program  # with an error node for each statement that failed
    diagnostics: list[Diagnostic]
    omitted: int  # errors found but not described (numbers out of range past MAX_SYNTAX_ERRORS)


def parse_tree(text: str) -> Parsed:
    """`syntax_tree`, also saying how many errors were found past those described."""
    _FOUND.numbers = []
    try:
        recovery = _Recovery(text)
        program = recovery.run()
        numbers = _FOUND.numbers
    finally:
        _FOUND.numbers = []
    found = recovery.diags + _input_words(program)
    kept = numbers[: max(0, MAX_SYNTAX_ERRORS - len(found))]
    statements = _with_errors(program.statements, recovery.errors)
    return Parsed(S.Program(statements, _comments(text)), found + kept, len(numbers) - len(kept))


TOKENS_WORD = "tokens"  # `input 1024 tokens`: the one word an input's size may take


def _input_words(program: S.Program) -> list[Diagnostic]:
    """`input 3 relu` reads as an input with the word `relu`: only `tokens` may follow a size."""
    diags = []
    for st in S.walk(program.statements):
        if not isinstance(st, S.InputDecl) or st.unit is None or st.unit.name == TOKENS_WORD:
            continue
        if did_you_mean(st.unit.name, [TOKENS_WORD]):
            diags.append(
                error(
                    "E001",
                    f"unknown word '{st.unit.name}' after the input's size",
                    st.unit.span,
                    "token ids are declared `input 1024 tokens`",
                )
            )
        else:
            label = "two statements on one line: separate them with a newline or ';'"
            diags.append(error("E001", f"{label} (found '{st.unit.name}')", st.unit.span, _HINTS[label]))
    return diags


def syntax_tree(text: str) -> tuple[S.Program, list[Diagnostic]]:
    """The syntax tree of any text, and its errors (the same ones `parse` gives).

    A statement that failed to parse is an `ErrorStmt` where it stood, in the
    body around it, so that everything else in the file is still there:

    >>> prog, errs = syntax_tree("input 8x8x3\\nconv K=\\nrelu\\n")
    >>> [type(s).__name__ for s in prog.statements], [e.code for e in errs]
    (['InputDecl', 'ErrorStmt', 'LayerStmt'], ['E001'])

    Where the parse stops (too many errors, too deep), the tree keeps the
    statements before, the bodies they leave open closed where the text
    ends, and one error node from there to the end; an unclosed `{` keeps
    its body.
    """
    parsed = parse_tree(text)
    return parsed.program, parsed.diagnostics


def _last_code_line(lines: list[str]) -> int:
    """The number of the last line with code on it (0 if none has)."""
    for i in range(len(lines), 0, -1):
        if lines[i - 1].split("#", 1)[0].strip():
            return i
    return 0


def _code_span(lines: list[str], first: int, last: int) -> Span:
    """From the first character of code on line `first` to the end of the code on line `last`."""
    head = lines[first - 1] if 1 <= first <= len(lines) else ""
    tail = lines[last - 1].split("#", 1)[0].rstrip() if 1 <= last <= len(lines) else ""
    column = len(head) - len(head.lstrip()) + 1
    end_line, end_column = (last, len(tail) + 1) if last >= first and tail else (first, column)
    return Span(line=first, column=column, end_line=end_line, end_column=end_column)


def _pos(span: Span) -> tuple[int, int]:
    return (span.line, span.column)


def _with_errors(stmts: tuple[S.Stmt, ...], errors: list[S.ErrorStmt]) -> tuple[S.Stmt, ...]:
    """`stmts` with each error node where it begins: in the innermost body around it."""
    if not errors:
        return stmts
    pending = sorted(errors, key=lambda e: _pos(e.span))
    out: list[S.Stmt] = []
    for st in stmts:
        inside = [e for e in pending if _in_body(st, _pos(e.span))]
        if inside:
            st = _with_errors_inside(st, inside)
            pending = [e for e in pending if e not in inside]
        while pending and _pos(pending[0].span) < _pos(st.span):
            out.append(pending.pop(0))
        out.append(st)
    return (*out, *pending)


def _braces(st: S.Stmt) -> list[S.Braces]:
    """Where the bodies of a statement stand."""
    if isinstance(st, S.Residual) and st.shortcut_braces is not None:
        return [st.braces, st.shortcut_braces]
    if isinstance(st, (S.BlockDef, S.Repeat, S.Residual, S.Shortcut, S.Concat, S.Branch)):
        return [st.braces]
    return []


def _inside(braces: S.Braces, at: tuple[int, int]) -> bool:
    return _pos(braces.open) < at < _pos(braces.close)


def _in_body(st: S.Stmt, at: tuple[int, int]) -> bool:
    return any(_inside(braces, at) for braces in _braces(st))


def _with_errors_inside(st: S.Stmt, errors: list[S.ErrorStmt]) -> S.Stmt:
    def place(stmts: tuple[S.Stmt, ...], braces: S.Braces) -> tuple[S.Stmt, ...]:
        return _with_errors(stmts, [e for e in errors if _inside(braces, _pos(e.span))])

    if isinstance(st, S.Residual):
        shortcut = st.shortcut
        if shortcut is not None and st.shortcut_braces is not None:
            shortcut = place(shortcut, st.shortcut_braces)
        return st._replace(body=place(st.body, st.braces), shortcut=shortcut)
    if isinstance(st, S.Concat):
        return st._replace(branches=place(st.branches, st.braces))
    if isinstance(st, S.BlockDef):
        return st._replace(body=place(st.body, st.braces))
    if isinstance(st, S.Repeat):
        return st._replace(body=place(st.body, st.braces))
    if isinstance(st, S.Shortcut):
        return st._replace(body=place(st.body, st.braces))
    if isinstance(st, S.Branch):
        return st._replace(body=place(st.body, st.braces))
    return st


_COMMENT = re.compile(r"#[^\n]*")  # the grammar's COMMENT: the language has no strings to hide a '#'


def _comments(text: str) -> tuple[S.Comment, ...]:
    found = []
    line, line_start, pos = 1, 0, 0
    for m in _COMMENT.finditer(text):
        newlines = text.count("\n", pos, m.start())
        if newlines:
            line += newlines
            line_start = text.rfind("\n", pos, m.start()) + 1
        pos = m.start()
        column = pos - line_start + 1
        found.append(S.Comment(m.group(), Span(line, column, line, column + len(m.group()))))
    return tuple(found)


def parse(text: str) -> tuple[S.Program | None, list[Diagnostic]]:
    """Parse a whole file; on errors (syntax, numbers, nesting), return None and the errors found
    (`syntax_tree` keeps what parsed).

    >>> prog, errs = parse("input 227x227x3\\nconv K=96 F=11 S=4\\n")
    >>> [type(s).__name__ for s in prog.statements], errs
    (['InputDecl', 'LayerStmt'], [])
    """
    program, diags = syntax_tree(text)
    return (None, diags) if diags else (program, diags)
