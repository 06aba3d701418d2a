"""A safe calculator: arithmetic evaluated by walking the syntax tree, never by eval()."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated

from parley.tools import tool

MAX_LENGTH = 500
MAX_EXPONENT = 1000
MAX_INT_BITS = 4000
"""About 1200 decimal digits: far beyond any business figure, well below slow or huge numbers."""

Number = int | float


def _sum(*args: Number | list[Number]) -> Number:
    # Accept both sum([1, 2, 3]) and sum(1, 2, 3): models write either.
    return sum(x for a in args for x in (a if isinstance(a, list) else [a]))


FUNCTIONS: dict[str, Callable[..., object]] = {
    # each result is checked by _checked (a real number, not too large)
    "abs": abs,
    "log": math.log,
    "max": max,
    "min": min,
    "round": round,
    "sqrt": math.sqrt,
    "sum": _sum,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
ALLOWED = (
    "Allowed: numbers, + - * / // % ** and parentheses, the functions "
    f"{', '.join(sorted(FUNCTIONS))} (e.g. round(x, 2), log(x, 10), sum([1, 2])) and the constants pi and e."
)


class CalcError(ValueError):
    """An expression that is not plain arithmetic, or whose result is unusable."""


@tool(family="analysis")
def calculate(
    expression: Annotated[
        str, "An arithmetic expression, e.g. (1250.5 - 980) / 980 * 100 or round(sqrt(2), 3)"
    ],
) -> str:
    """Evaluate an arithmetic expression and return the result. Use it instead of doing math in your head.

    Supports numbers, + - * / // % ** and parentheses, abs, round, min, max, sum, sqrt,
    log (natural, or log(x, base)) and the constants pi and e. No variables or other Python.
    """
    text = expression.strip()
    if not text:
        return f"Error: the expression is empty. {ALLOWED}"
    if len(text) > MAX_LENGTH:
        return f"Error: the expression is longer than {MAX_LENGTH} characters; split it up."
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return f"Error: not a valid arithmetic expression ({exc.msg}). {ALLOWED}"
    try:
        return _format(_eval(tree.body))
    except CalcError as exc:
        return f"Error: {exc}"
    except ZeroDivisionError:
        return "Error: division by zero."
    except OverflowError:
        return "Error: the result is too large."
    except RecursionError:
        return "Error: the expression is nested too deeply."
    except (ValueError, TypeError) as exc:  # math domain errors, min() of nothing, …
        return f"Error: {str(exc).rstrip('.')}."


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        return _constant(node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        return _binary(node)
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalcError(f"unknown name {node.id!r}: variables are not allowed. {ALLOWED}")
    raise CalcError(_refusal(node))


def _constant(node: ast.Constant) -> Number:
    # bool is an int subclass and True + True is not arithmetic anyone means.
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    raise CalcError(f"{node.value!r} is not a number. {ALLOWED}")


def _binary(node: ast.BinOp) -> Number:
    op = BINARY.get(type(node.op))
    if op is None:
        hint = " Use ** for powers." if isinstance(node.op, ast.BitXor) else ""
        raise CalcError(f"the operator {_symbol(node.op)} is not allowed.{hint} {ALLOWED}")
    left, right = _eval(node.left), _eval(node.right)
    if op is operator.pow:
        _check_power(left, right)
    return _checked(op(left, right))


def _refusal(node: ast.AST) -> str:
    """Why a node that is not arithmetic is refused."""
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr}) is not allowed. {ALLOWED}"
    if isinstance(node, ast.List | ast.Tuple):
        return f"a list is only allowed as a function argument, e.g. sum([1, 2, 3]). {ALLOWED}"
    return f"{type(node).__name__} is not allowed. {ALLOWED}"


def _call(node: ast.Call) -> Number:
    if isinstance(node.func, ast.Attribute):
        raise CalcError(f"attribute access (.{node.func.attr}) is not allowed. {ALLOWED}")
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
        raise CalcError(f"the function {name!r} is not allowed. {ALLOWED}")
    if node.keywords:
        raise CalcError("keyword arguments are not allowed; pass values by position, e.g. round(x, 2).")
    args: list[Number | list[Number]] = []
    for arg in node.args:
        if isinstance(arg, ast.List | ast.Tuple):
            args.append([_eval(item) for item in arg.elts])
        elif isinstance(arg, ast.Starred):
            raise CalcError(f"* unpacking is not allowed. {ALLOWED}")
        else:
            args.append(_eval(arg))
    return _checked(FUNCTIONS[node.func.id](*args))


def _check_power(base: Number, exponent: Number) -> None:
    # Refuse before computing: 9 ** 9 ** 9 would otherwise hang the process building a huge integer.
    if abs(exponent) > MAX_EXPONENT:
        raise CalcError(f"exponents above {MAX_EXPONENT} are not allowed.")
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and (abs(base).bit_length() * exponent > MAX_INT_BITS)
    ):
        raise CalcError("the result is too large.")


def _checked(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        # e.g. (-8) ** 0.5 is complex in Python
        raise CalcError("the result is not a real number.")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalcError("the result is too large.")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalcError("the result is too large (or not a number).")
    return value


def _format(value: Number) -> str:
    if isinstance(value, float):
        return repr(float(f"{value:.15g}"))  # 0.1 + 0.2 -> 0.3, not 0.30000000000000004
    return str(value)


def _symbol(op: ast.operator) -> str:
    symbols = {
        ast.BitXor: "^",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
    }
    return symbols.get(type(op), type(op).__name__)
