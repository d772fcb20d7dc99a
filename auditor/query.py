"""A small, safe query language over a DataFrame's columns: what `auditor review --accept-where/--reject-where` reads.

    example     issue_type == 'gross_error' and label_score < 0.2
    operands    a column by its name (label_score); literals 3, -0.5, 'text', True, False
    compare     == != < <= > >=, chained (0.1 < label_score <= 0.5); x in [...] / x not in [...] (literals only)
    logic       and, or, not, element-wise; & | ~ alike (they bind tighter than comparisons: (a < 1) & (b > 2))
    arithmetic  + - * / // % ** and unary + -, abs(x), on numbers
    text        name.str.contains('x') (literal, not a regex), .str.startswith('x'), .str.endswith('x'),
                .str.lower(), .str.upper(); name.isna(), name.notna()

A missing value (NaN) makes a comparison false, except `!=` and `not in` (true), as in pandas; a row whose condition
is missing is not selected. Nothing else is accepted (attributes, subscripts, other calls, lambdas, `@` variables,
...): the string is parsed with `ast` and evaluated by walking the tree, never by Python's or pandas' eval.
"""

from __future__ import annotations

import ast
import difflib
import operator
import warnings
from collections.abc import Callable, Iterator

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype, is_string_dtype

from auditor.errors import InputError

MAX_LENGTH = 2000  # characters
MAX_DEPTH = 100  # levels of the syntax tree, so that a hostile string cannot exhaust the stack
MAX_POWER_BITS = 4096  # an integer literal power above this is refused: 9**9**9 would take minutes
EXAMPLE = "issue_type == 'gross_error' and label_score < 0.2"
ALLOWED = ("allowed: column names, literals, comparisons, and/or/not, in [...], arithmetic, abs(), "
           ".str.contains/startswith/endswith/lower/upper, .isna()/.notna()")
STR_TESTS = ("contains", "startswith", "endswith")
STR_CASES = ("lower", "upper")
NA_TESTS = ("isna", "notna")

Value = pd.Series | bool | int | float | str
Position = tuple[int, int, int]  # (rank, line, column): a disallowed construct ranks before an unknown name

_COMPARE: dict[type, Callable] = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
                                  ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITHMETIC: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                                     ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
                                     ast.Pow: operator.pow}
_LOGIC: dict[type, Callable] = {ast.And: operator.and_, ast.BitAnd: operator.and_, ast.Or: operator.or_,
                                ast.BitOr: operator.or_}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
            ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@",
            ast.And: "and", ast.Or: "or", ast.Not: "not", ast.Invert: "~", ast.UAdd: "+", ast.USub: "-",
            ast.Is: "is", ast.IsNot: "is not", ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=",
            ast.Gt: ">", ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}
_EVAL_ERRORS = (TypeError, ValueError, ArithmeticError)


def evaluate_query(frame: pd.DataFrame, expression: str, *, field: str | None = None) -> pd.Series:
    """The rows of `frame` (N rows) for which `expression` (the language above) is true: a bool Series (N,) on its
    index; an InputError (naming `field`) for anything outside the language or not a condition per row."""
    query = _Query(frame, expression, field)
    tree = query.parse()
    problems = sorted(query.problems(tree.body), key=lambda problem: problem[0])
    if problems:
        raise query.error(problems[0][1])
    value = query.value(tree.body)
    if _kind(value) != "bool":
        raise query.error(f"expected a condition, true or false for each row, e.g. \"{EXAMPLE}\"")
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool).rename(None)
    return pd.Series(bool(value), index=frame.index)


def _kind(value: Value) -> str:
    """'bool', 'number', 'text' or 'other': what operators a value takes."""
    if isinstance(value, pd.Series):
        if is_bool_dtype(value.dtype):
            return "bool"
        if is_numeric_dtype(value.dtype):
            return "number"
        return "text" if is_string_dtype(value) else "other"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text" if isinstance(value, str) else "other"


def _literal(node: ast.expr) -> bool:
    """A literal of the language: a bool, number or text constant, or a signed number."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
        return isinstance(node, ast.Constant) and _kind(node.value) == "number"
    return isinstance(node, ast.Constant) and _kind(node.value) != "other"


def _literal_value(node: ast.expr) -> bool | int | float | str:
    """The value of a node that `_literal` accepts."""
    if isinstance(node, ast.UnaryOp):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    return node.value


def _start(node: ast.AST) -> Position:
    return 0, node.lineno, node.col_offset


def _end(node: ast.AST) -> Position:
    return 0, node.end_lineno, node.end_col_offset


def _quoted(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _not_allowed(token: str) -> str:
    return f"{_quoted(token)} is not allowed ({ALLOWED})"


class _Query:
    """One expression against one frame: parsing, checking and evaluating, with errors that quote the expression."""

    def __init__(self, frame: pd.DataFrame, expression: str, field: str | None) -> None:
        self.frame = frame
        self.expression = expression
        self.field = field
        self.columns = [c for c in frame.columns if isinstance(c, str)]

    def error(self, reason: str) -> InputError:
        """An InputError of one line: the (shortened) expression and the reason."""
        shown = _quoted(" ".join(str(self.expression).split()), 80)
        return InputError(f"invalid query {shown}: {reason}", field=self.field)

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.expression, node) or type(node).__name__

    def parse(self) -> ast.Expression:
        """The syntax tree of the expression, no longer than MAX_LENGTH and no deeper than MAX_DEPTH."""
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise self.error(f"empty; expected a condition, e.g. \"{EXAMPLE}\"")
        if len(self.expression) > MAX_LENGTH:
            raise self.error(f"{len(self.expression)} characters; at most {MAX_LENGTH} are allowed")
        try:
            with warnings.catch_warnings():  # the parser warns on stderr about e.g. "1or x"; the query is one line
                warnings.simplefilter("ignore")
                tree = ast.parse(self.expression, mode="eval")
        except SyntaxError as e:
            raise self.error(self.syntax(e)) from None
        except (RecursionError, MemoryError, ValueError) as e:
            raise self.error(f"cannot be parsed ({type(e).__name__}: {' '.join(str(e).split())})") from None
        stack = [(tree.body, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.error(f"nested more than {MAX_DEPTH} levels deep")
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
        return tree

    def syntax(self, e: SyntaxError) -> str:
        """A SyntaxError in one line: where, why and the text from there."""
        if e.lineno is None or e.offset is None:
            return f"syntax error: {e.msg}"
        lines = self.expression.splitlines() or [""]
        line = lines[min(max(e.lineno, 1), len(lines)) - 1]
        column = e.offset if 1 <= e.offset <= len(line) else len(line) + 1  # 0 or past the end: at the end
        where = f"column {column}" if len(lines) == 1 else f"line {e.lineno}, column {column}"
        near = line[column - 1:]
        reason = f"syntax error at {where}: {e.msg}" + (f", near {_quoted(near, 20)}" if near else ", at the end")
        if near.startswith("@"):
            reason += " ('@' variables are not part of this language)"
        return reason

    def unknown(self, name: str) -> str:
        """The reason for an unknown name: the closest columns, or the first few."""
        close = difflib.get_close_matches(name, self.columns, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        shown = ", ".join(self.columns[:8]) + (f", ... ({len(self.columns)} in all)" if len(self.columns) > 8 else "")
        return f"unknown column {name!r} ({hint}columns: {shown or 'none'})"

    def problems(self, node: ast.AST) -> Iterator[tuple[Position, str]]:
        """Every construct outside the language, each with where its token starts (the first one is reported)."""
        match node:
            case ast.Name(id=name):
                if name not in self.columns:
                    yield (1, node.lineno, node.col_offset), self.unknown(name)
            case ast.Constant(value=value):
                if _kind(value) == "other":
                    yield _start(node), _not_allowed(self.text(node))
            case ast.UnaryOp(operand=operand):
                yield from self.problems(operand)
            case ast.BinOp(left=left, op=op, right=right):
                yield from self.problems(left)
                if type(op) not in _ARITHMETIC and type(op) not in _LOGIC:
                    yield _end(left), _not_allowed(_SYMBOLS.get(type(op), type(op).__name__))
                yield from self.problems(right)
            case ast.BoolOp(values=values):
                for value in values:
                    yield from self.problems(value)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                yield from self.problems(left)
                for op, right in zip(ops[:-1], comparators[:-1], strict=True):
                    if isinstance(op, ast.In | ast.NotIn):
                        yield _start(right), f"'{_SYMBOLS[type(op)]} [...]' cannot be followed by another comparison"
                for before, op, right in zip([left, *comparators[:-1]], ops, comparators, strict=True):
                    yield from self.compare_problems(before, op, right)
            case ast.Call():
                yield from self.call_problems(node)
            case ast.Attribute(value=value, attr=attr):
                accessor = isinstance(value, ast.Attribute) and value.attr == "str"
                yield from self.problems(value.value if accessor else value)
                position = 0, node.end_lineno, node.end_col_offset - len(attr)
                if attr in ("str", *STR_TESTS, *STR_CASES, *NA_TESTS):
                    yield position, (f"'.{attr}' is only allowed as a call: name.str.contains('x'), name.str.lower(), "
                                     "name.isna()")
                else:
                    yield position, _not_allowed(attr)
            case ast.Subscript(value=value, slice=index):
                yield from self.problems(value)
                yield _end(value), _not_allowed(f"[{self.text(index)}]")
            case _:
                yield _start(node), _not_allowed(self.text(node))

    def compare_problems(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Iterator[tuple[Position, str]]:
        """The problems of one link `left op right` of a comparison (`left` was checked already)."""
        if isinstance(op, ast.In | ast.NotIn):
            if not isinstance(right, ast.List | ast.Tuple):
                yield _start(right), (f"'{_SYMBOLS[type(op)]}' needs a list of literals, e.g. issue_type in "
                                      f"['gross_error', 'off_contour'], not {_quoted(self.text(right))}")
                return
            for element in right.elts:
                if not _literal(element):
                    yield _start(element), (f"{_quoted(self.text(element))} is not allowed: the list after "
                                            f"'{_SYMBOLS[type(op)]}' holds literals only")
            return
        if type(op) not in _COMPARE:
            yield _end(left), _not_allowed(_SYMBOLS[type(op)])
        yield from self.problems(right)

    def call_problems(self, node: ast.Call) -> Iterator[tuple[Position, str]]:
        """The problems of a call: only abs(x), x.str.<method>(literal) and x.isna() / x.notna() are calls."""
        func = node.func
        arguments: tuple[int, bool] | None = None  # (how many, text literals only) when func is one of ours
        match func:
            case ast.Name(id="abs"):
                arguments = 1, False
            case ast.Attribute(value=ast.Attribute(value=receiver, attr="str"), attr=method) if method in STR_TESTS:
                yield from self.problems(receiver)
                arguments = 1, True
            case ast.Attribute(value=ast.Attribute(value=receiver, attr="str"), attr=method) if method in STR_CASES:
                yield from self.problems(receiver)
                arguments = 0, True
            case ast.Attribute(value=receiver, attr=method) if method in NA_TESTS:
                yield from self.problems(receiver)
                arguments = 0, True
            case ast.Name(id=name):
                yield _start(func), _not_allowed(name)
            case ast.Attribute():
                yield from self.problems(func)
            case _:
                yield from self.problems(func)
                yield _end(func), _not_allowed(f"{self.text(func)}(...)")
        for keyword in node.keywords:
            yield _start(keyword), _not_allowed(self.text(keyword))
        if arguments is None:
            for argument in node.args:
                yield from self.problems(argument)
            return
        count, text_only = arguments
        name = func.attr if isinstance(func, ast.Attribute) else "abs"
        if len(node.args) != count:
            wanted = "no argument" if count == 0 else "one text literal" if text_only else "one argument"
            yield _end(func), f"'{name}()' takes {wanted}, got {len(node.args)}"
        for argument in node.args:
            if text_only and not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                yield _start(argument), (f"{_quoted(self.text(argument))} is not allowed: the argument of "
                                         f"'{name}()' must be a text literal, e.g. name.str.{name}('x')")
            elif not text_only:
                yield from self.problems(argument)

    def fail(self, node: ast.AST, reason: str) -> InputError:
        return self.error(f"{reason} in {_quoted(self.text(node))}")

    def apply(self, node: ast.AST, function: Callable, *arguments: Value) -> Value:
        """`function(*arguments)`, pandas' and Python's errors (mixed types, division by zero) as InputErrors."""
        try:
            return function(*arguments)
        except _EVAL_ERRORS as e:
            raise self.fail(node, f"cannot evaluate ({' '.join(str(e).split()) or type(e).__name__})") from None

    def value(self, node: ast.expr) -> Value:
        """The value of a node that `problems` found nothing wrong with: a Series on the frame's index or a scalar."""
        match node:
            case ast.Constant(value=value):
                return value
            case ast.Name(id=name):
                column = self.frame[name]
                if not isinstance(column, pd.Series):
                    raise self.fail(node, f"column {name!r} appears more than once")
                return column
            case ast.UnaryOp(op=op, operand=operand):
                return self.unary(node, op, self.value(operand))
            case ast.BinOp(left=left, op=op, right=right):
                return self.binary(node, op, self.value(left), self.value(right))
            case ast.BoolOp(op=op, values=values):
                result = self.value(values[0])
                for value in values[1:]:
                    result = self.binary(node, op, result, self.value(value))
                return result
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                return self.compare(node, self.value(left), ops, comparators)
            case ast.Call(func=ast.Name(id="abs"), args=[argument]):
                value = self.value(argument)
                if _kind(value) != "number":
                    raise self.fail(node, "'abs()' needs a number")
                return self.apply(node, abs, value)
            case ast.Call(func=ast.Attribute(value=receiver, attr=method), args=arguments):
                return self.method(node, method, receiver, [a.value for a in arguments])
        raise self.fail(node, _not_allowed(self.text(node)))  # unreachable: `problems` refuses it first

    def unary(self, node: ast.UnaryOp, op: ast.unaryop, value: Value) -> Value:
        symbol = _SYMBOLS[type(op)]
        if isinstance(op, ast.Not | ast.Invert):
            if _kind(value) != "bool":
                raise self.fail(node, f"'{symbol}' needs true/false values")
            return self.apply(node, operator.invert, value) if isinstance(value, pd.Series) else not value
        if _kind(value) != "number":
            raise self.fail(node, f"unary '{symbol}' needs a number")
        return self.apply(node, operator.neg if isinstance(op, ast.USub) else operator.pos, value)

    def binary(self, node: ast.AST, op: ast.operator | ast.boolop, left: Value, right: Value) -> Value:
        symbol = _SYMBOLS[type(op)]
        if type(op) in _LOGIC:
            if _kind(left) != "bool" or _kind(right) != "bool":
                raise self.fail(node, f"'{symbol}' needs true/false values on both sides (comparisons, or true/false "
                                      "columns; & and | bind tighter than comparisons: write (a < 1) & (b > 2))")
            return self.apply(node, _LOGIC[type(op)], left, right)
        if _kind(left) != "number" or _kind(right) != "number":
            raise self.fail(node, f"'{symbol}' needs numbers on both sides")
        if (isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                and right * left.bit_length() > MAX_POWER_BITS):
            raise self.fail(node, "the number is too large")
        return self.apply(node, _ARITHMETIC[type(op)], left, right)

    def compare(self, node: ast.Compare, left: Value, ops: list[ast.cmpop], comparators: list[ast.expr]) -> Value:
        """A chained comparison `a < b <= c`: (a < b) and (b <= c), element-wise."""
        result: Value | None = None
        for op, comparator in zip(ops, comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):  # always the last link
                values = [_literal_value(element) for element in comparator.elts]
                inside = self.apply(node, left.isin, values) if isinstance(left, pd.Series) else left in values
                link = self.unary(node, ast.Not(), inside) if isinstance(op, ast.NotIn) else inside
            else:
                right = self.value(comparator)
                kinds = {_kind(left), _kind(right)}
                if type(op) not in (ast.Eq, ast.NotEq) and "text" in kinds and kinds & {"number", "bool"}:
                    raise self.fail(node, f"'{_SYMBOLS[type(op)]}' cannot order text against numbers")
                link = self.apply(node, _COMPARE[type(op)], left, right)
                left = right
            result = link if result is None else self.apply(node, operator.and_, result, link)
        return result

    def method(self, node: ast.Call, method: str, receiver: ast.expr, arguments: list[str]) -> Value:
        """x.isna(), x.notna(), x.str.<method>(...): the calls `problems` lets through."""
        if method not in (*NA_TESTS, *STR_TESTS, *STR_CASES):
            raise self.fail(node, _not_allowed(method))  # unreachable: `problems` refuses it first
        if method in NA_TESTS:
            value = self.value(receiver)
            missing = value.isna() if isinstance(value, pd.Series) else bool(pd.isna(value))
            return missing if method == "isna" else self.unary(node, ast.Not(), missing)
        value = self.value(receiver.value)
        if not (isinstance(value, pd.Series) and _kind(value) == "text"):
            raise self.fail(node, f"'.str.{method}()' needs a text column")
        if method in STR_CASES:
            return self.apply(node, getattr(value.str, method))
        test = getattr(value.str, method)
        if method == "contains":
            return self.apply(node, lambda text: test(text, regex=False, na=False), arguments[0])
        return self.apply(node, lambda text: test(text, na=False), arguments[0])
