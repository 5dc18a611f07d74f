"""Text -> syntax tree (`archc.frontend.syntax`), with human syntax errors.

The grammar is package data (`archc/frontend/arch.lark`, shipped in the wheel), parsed by lark's LALR(1) parser with the
Transformer run inline, so no parse tree is ever built -- it never leaves
this module. The one parse serves the elaborator and `archc fmt` alike: the
syntax tree keeps what printing the file again needs (texts as written,
parentheses, braces, comments). Syntax errors are labelled from examples, the way lark's `match_examples`
labels errors in its own grammar (see `_example_states`); after an error the offending line is
blanked and the file re-parsed, so independent syntax errors are all reported, and the
blanked lines become error nodes of the tree (`syntax_tree`).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, NamedTuple, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput
from lark.lexer import PatternStr

from archc.diagnostics import Diagnostic, did_you_mean, error
from archc.frontend import syntax as S
from archc.ir import Span

MAX_SYNTAX_ERRORS = 20
_SI = {"K": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9}


def grammar_text() -> str:
    """The grammar, package data beside this module."""
    return importlib.resources.files("archc.frontend").joinpath("arch.lark").read_text(encoding="utf-8")


def span_of_token(tok: Token) -> Span:
    line = tok.line or 1
    col = tok.column or 1
    end_line = tok.end_line or line
    end_col = tok.end_column or col + max(1, len(str(tok)))
    return Span(line=line, column=col, end_line=end_line, end_column=end_col)


def parse_number(text: str) -> int | float:
    """`4_096` -> 4096, `34.8K` -> 34800, `1e-4` -> 0.0001.

    >>> parse_number("27.55M")
    27550000
    """
    clean = text.replace("_", "")
    scale = Decimal(1)
    if clean and clean[-1] in _SI:
        scale = _SI[clean[-1]]
        clean = clean[:-1]
    try:
        # exact: the default context keeps 28 digits, and `expect params = ...` may need more
        with localcontext(prec=len(clean) + 12):
            value = Decimal(clean) * scale
    except InvalidOperation:  # pragma: no cover - the lexer admits only numbers
        return float("nan")
    if value == value.to_integral_value() and (scale != 1 or not any(c in clean for c in ".eE")):
        return int(value)
    return float(value)


def parse_dims(text: str) -> tuple[int, ...]:
    return tuple(int(p.replace("_", "").strip()) for p in text.replace("×", "x").split("x"))


@v_args(inline=True)
class _ToSyntax(Transformer[Token, S.Program]):
    """One method per grammar rule; returns `archc.frontend.syntax` nodes."""

    # expressions
    def number(self, tok: Token) -> S.Number:
        return S.Number(parse_number(str(tok)), str(tok), span_of_token(tok))

    def dims(self, tok: Token) -> S.Dims:
        return S.Dims(parse_dims(str(tok)), str(tok), span_of_token(tok))

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
        text = str(tok)
        dims = parse_dims(text) if tok.type == "DIMS" else (parse_number(text),)
        return S.ShapeLit(tuple(d if isinstance(d, int) else -1 for d in dims), text, span_of_token(tok))

    def arrow(self, shape: S.ShapeLit) -> S.ShapeLit:
        return shape

    def positional(self, expr: S.Expr) -> S.Expr:
        return expr

    def keyword(self, key: Token, _eq: Token, expr: S.Expr) -> S.KeyArg:
        return S.KeyArg(str(key), expr, span_of_token(key))

    def body(self, opening: Token, *rest: Any) -> _Body:
        return _Body(rest[:-1], S.Braces(span_of_token(opening), span_of_token(rest[-1])))

    def param(self, name: Token, _eq: Token | None = None, default: S.Expr | None = None) -> S.Param:
        return S.Param(str(name), default, span_of_token(name))

    def block_params(self, *params: S.Param | None) -> tuple[S.Param, ...]:
        return tuple(p for p in params if p is not None)

    def shortcut_clause(self, kw: Token, body: _Body) -> _Clause:
        return _Clause(span_of_token(kw), body)

    def tolerance(self, pm: Token, num: Token, pct: Token | None = None) -> _Tolerance:
        return _Tolerance(float(parse_number(str(num))), pct is not None, str(pm), str(num))

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
            v = S.Dims(parse_dims(str(value)), str(value), span_of_token(value))
        else:
            v = S.Number(parse_number(str(value)), str(value), span_of_token(value))
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
    for lineno, text_line in enumerate(text.splitlines(), start=1):
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
        lines = text.splitlines() or [""]
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
    if label:
        msg = f"{label} (found {_describe_token(tok)})"
        return error("E001", msg, span, _HINTS.get(label))
    hint = f"expected {', '.join(expected[:-1]) + ' or ' if len(expected) > 1 else ''}{expected[-1]}" if expected else None
    if tok.type == "SLASH":
        hint = "integer division is written //"
    return error("E001", generic, span, hint)


_MISSING_VALUE = "missing value after '='"
KEYWORDS = (
    "network", "input", "block", "repeat", "residual", "shortcut", "concat", "add", "multiply", "branch", "expect"
)


def _keyword_label(text: str, colon: Token) -> Diagnostic | None:
    """`repeat: repeat 2 { ... }`: a keyword used as a name, said plainly."""
    assert colon.line is not None and colon.column is not None
    before = text.splitlines()[colon.line - 1][: colon.column - 1]
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
    lines = text.split("\n")
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
    return exact.get((state.position, tok.type)) or by_state.get(state.position)


def _blank_line(text: str, line: int) -> str | None:
    """The text with one line blanked, or None if that would unbalance braces."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    old = lines[line - 1].split("#", 1)[0]
    if old.count("{") != old.count("}"):
        return None
    lines[line - 1] = ""
    return "\n".join(lines)


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
    """The syntax tree of any text, and its syntax errors (the same ones `parse` gives).

    A statement that failed to parse is an `ErrorStmt` where it stood, in the
    body around it, so that everything else in the file is still there:

    >>> prog, errs = syntax_tree("input 8x8x3\\nconv K=\\nrelu\\n")
    >>> [type(s).__name__ for s in prog.statements], [e.code for e in errs]
    (['InputDecl', 'ErrorStmt', 'LayerStmt'], ['E001'])

    Where recovery gives up (on a line that opens or closes a body, an unclosed
    `{`, too many errors), the tree keeps the statements before the error, the
    bodies they leave open closed where the text ends, and one error node from
    there to the end.
    """
    diags: list[Diagnostic] = []
    lines = text.split("\n")
    errors: list[S.ErrorStmt] = []
    current = text
    while True:
        try:
            # the inline transformer (`_ToSyntax`) turns the tree into a Program; lark types it as a Tree
            program = cast(S.Program, _parser().parse(current))
            break
        except UnexpectedInput as exc:
            diag = _syntax_diagnostic(exc, current)
            diags.append(diag)
            blanked = None
            if diag.code != "E002" and len(diags) < MAX_SYNTAX_ERRORS and diag.span is not None:
                blanked = _blank_line(current, diag.span.line)
            if blanked is None or blanked == current:
                cut = diag.span.line if diag.code != "E002" and diag.span is not None else None
                program, unparsed = _salvage(current, cut)
                if unparsed is not None:
                    errors.append(S.ErrorStmt(_code_span(lines, unparsed, _last_code_line(lines))))
                break
            assert diag.span is not None
            errors.append(S.ErrorStmt(_code_span(lines, diag.span.line, diag.span.line)))
            current = blanked
    diags.extend(_input_words(program))
    return S.Program(_with_errors(program.statements, errors), _comments(text)), diags


def _salvage(text: str, cut: int | None) -> tuple[S.Program, int | None]:
    """The statements before line `cut` (all of them for None), with the bodies they leave
    open closed below the end of the text; and the first line left unparsed (None if none is).

    A kept text that ends in a head waiting for its `{` on a later line (`repeat 2`)
    does not parse even so: it is cut again before that head.
    """
    lines = text.split("\n")
    keep = len(lines) if cut is None else cut - 1
    unparsed = cut
    for _ in range(3):
        kept = "\n".join(lines[:keep])
        # the closing braces go below the end of the text, so that what was cut off is inside them
        closed = kept + "\n" * (len(lines) - keep + 1) + "}" * len(_open_braces(kept))
        try:
            return cast(S.Program, _parser().parse(closed)), unparsed
        except UnexpectedInput:
            keep = _last_code_line(lines[:keep]) - 1
            if keep < 0:
                break
            unparsed = keep + 1
    return S.Program(()), 1


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


def _with_errors(stmts: tuple[S.Stmt, ...], errors: list[S.ErrorStmt]) -> tuple[S.Stmt, ...]:
    """`stmts` with each error node where its line is: in the innermost body around it."""
    if not errors:
        return stmts
    pending = sorted(errors, key=lambda e: e.span.line)
    out: list[S.Stmt] = []
    for st in stmts:
        inside = [e for e in pending if _in_body(st, e.span.line)]
        if inside:
            st = _with_errors_inside(st, inside)
            pending = [e for e in pending if e not in inside]
        while pending and pending[0].span.line < st.span.line:
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


def _in_body(st: S.Stmt, line: int) -> bool:
    return any(braces.open.line < line < braces.close.line for braces in _braces(st))


def _with_errors_inside(st: S.Stmt, errors: list[S.ErrorStmt]) -> S.Stmt:
    def place(stmts: tuple[S.Stmt, ...], braces: S.Braces) -> tuple[S.Stmt, ...]:
        return _with_errors(stmts, [e for e in errors if braces.open.line < e.span.line < braces.close.line])

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
    """Parse a whole file; on syntax errors, return None and every error found
    (`syntax_tree` keeps what parsed).

    >>> prog, errs = parse("input 227x227x3\\nconv K=96 F=11 S=4\\n")
    >>> [type(s).__name__ for s in prog.statements], errs
    (['InputDecl', 'LayerStmt'], [])
    """
    program, diags = syntax_tree(text)
    return (None, diags) if diags else (program, diags)
