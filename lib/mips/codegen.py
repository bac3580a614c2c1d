"""Formulas -> one readable, self-contained Python program per task; formulas evaluated, tidied and typeset.

A formula is a Python expression over named variables (state coordinates ``h``/``h0, h1, ..``, inputs
``x``/``a, b, ..``). This module evaluates such expressions on integer tables with Python's semantics
(vectorized), simplifies them with sympy where that keeps them exact, renders them as LaTeX, and emits the
program of the MIPS template (spec §11): the initial state, a loop over the inputs, a simultaneous state
update and the output, valid for every sequence length. Explained in notebooks/regress.ipynb and
notebooks/program.ipynb.
"""

from __future__ import annotations

import ast
import logging
import textwrap
from collections.abc import Sequence

import numpy as np
import sympy

log = logging.getLogger(__name__)

METHOD_NAMES = {
    "linear": "integer-linear regression",
    "boolean": "Boolean formula from the truth table",
    "symbolic": "enumerative symbolic regression",
    "pysr": "PySR symbolic regression",
    "additive": "integer-linear in the state plus a table over the input",
    "argmax": "arg-max of integer-linear scores (a classifier's reading)",
    "table": "lookup table (no formula fit)",
    "none": "no exact fit",
}
_CALLS = {"abs", "min", "max", "int", "argmax"}

# ---------------------------------------------------------------------------------------------------------
# Evaluating expressions on tables (Python semantics, numpy speed)


def parse(expr: str) -> ast.expr:
    """The expression's syntax tree; raises ValueError for anything but a plain expression."""
    try:
        return ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not a Python expression: {expr!r} ({exc.msg})") from exc


def evaluate(expr: str, names: Sequence[str], X: np.ndarray, tables: dict | None = None) -> np.ndarray:
    """Values of ``expr`` on every row of X (n, len(names)), exactly as Python would compute them.

    Raises ZeroDivisionError where a divisor is 0 and KeyError where a table has no entry, like the
    emitted program would.
    """
    X = np.asarray(X, dtype=np.int64)
    rows = X.shape[0] if X.ndim == 2 or not names else -1  # a constant target has zero columns
    X = X.reshape(rows, len(names))
    env = {n: X[:, i] for i, n in enumerate(names)}
    out = _eval(parse(expr), env, tables or {})
    return np.broadcast_to(np.asarray(out, dtype=np.int64), (len(X),)).copy()


def _eval(node: ast.AST, env: dict, tables: dict):
    match node:
        case ast.Constant(value=v) if isinstance(v, int):
            return np.int64(v)
        case ast.Name(id=name) if name in env:
            return env[name]
        case ast.UnaryOp(op=ast.USub(), operand=o):
            return -_eval(o, env, tables)
        case ast.UnaryOp(op=ast.UAdd(), operand=o):
            return _eval(o, env, tables)
        case ast.BinOp(left=l_, op=op, right=r_):
            a, b = _eval(l_, env, tables), _eval(r_, env, tables)
            if isinstance(op, ast.FloorDiv | ast.Mod) and np.any(np.asarray(b) == 0):
                raise ZeroDivisionError("integer division or modulo by zero")
            return _BINOPS[type(op)](a, b)
        case ast.Compare(left=first, ops=ops, comparators=rest):
            vals = [_eval(first, env, tables)] + [_eval(c, env, tables) for c in rest]
            result = np.bool_(True)
            for op, a, b in zip(ops, vals[:-1], vals[1:], strict=True):
                result = result & _COMPARE[type(op)](a, b)
            return np.asarray(result).astype(np.int64)
        case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in _CALLS:
            vals = [_eval(a, env, tables) for a in args]
            if fn == "abs":
                return np.abs(vals[0])
            if fn == "int":
                return np.asarray(vals[0]).astype(np.int64)
            if fn == "argmax":                       # the first largest, as the emitted helper returns it
                return np.argmax(np.stack(np.broadcast_arrays(*vals)), axis=0).astype(np.int64)
            red = np.minimum if fn == "min" else np.maximum
            out = vals[0]
            for v in vals[1:]:
                out = red(out, v)
            return out
        case ast.Subscript(value=ast.Name(id=table), slice=key) if table in tables:
            parts = key.elts if isinstance(key, ast.Tuple) else [key]
            cols = np.broadcast_arrays(*[np.asarray(_eval(p, env, tables)) for p in parts])
            lookup = tables[table]
            if len(cols) == 1:
                return np.array([lookup[int(k)] for k in cols[0]], dtype=np.int64)
            keys = zip(*cols, strict=True)
            return np.array([lookup[tuple(int(v) for v in k)] for k in keys], dtype=np.int64)
    raise ValueError(f"unsupported syntax in formula: {ast.unparse(node)!r}")


_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.FloorDiv: np.floor_divide,
           ast.Mod: np.mod, ast.BitAnd: np.bitwise_and, ast.BitOr: np.bitwise_or, ast.BitXor: np.bitwise_xor}
_COMPARE = {ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
            ast.Gt: np.greater, ast.GtE: np.greater_equal}


def is_exact(expr: str, names: Sequence[str], X: np.ndarray, target: np.ndarray,
             tables: dict | None = None) -> bool:
    """Whether ``expr`` reproduces ``target`` on every row (a crash on any row counts as not exact)."""
    try:
        return bool(np.array_equal(evaluate(expr, names, X, tables), np.asarray(target, dtype=np.int64)))
    except (ZeroDivisionError, KeyError, OverflowError):
        return False


def expression_length(expr: str) -> int:
    """Size of a formula: variables, constants and operators (``int(...)`` around a comparison is free).

    The same measure as the enumerator's length, so formulas from every method compare.
    """
    def size(node: ast.AST) -> int:
        match node:
            case ast.Call(func=ast.Name(id="int"), args=[arg]):
                return size(arg)
            case ast.Call(args=args):
                return 1 + sum(size(a) for a in args)
            case ast.Compare(left=first, comparators=rest):
                return len(rest) + size(first) + sum(size(c) for c in rest)
            case ast.Subscript(slice=key):
                parts = key.elts if isinstance(key, ast.Tuple) else [key]
                return 1 + sum(size(p) for p in parts)
            case ast.Constant(value=v) if isinstance(v, int) and v < 0:
                return 2
        return 1 + sum(size(c) for c in ast.iter_child_nodes(node)
                       if not isinstance(c, ast.expr_context | ast.operator | ast.unaryop | ast.cmpop))
    return size(parse(expr))


# ---------------------------------------------------------------------------------------------------------
# sympy: simplification and LaTeX


class Iverson(sympy.Function):
    """[P]: 1 if the condition P holds, else 0 (Python's ``int(P)``)."""

    def _latex(self, printer):
        return r"\left[" + printer._print(self.args[0]) + r"\right]"


class Argmax(sympy.Function):
    """The index of the first largest argument."""

    def _latex(self, printer):
        return r"\operatorname{argmax}\left(" + ", ".join(printer._print(a) for a in self.args) + r"\right)"


class Lookup(sympy.Function):
    """A value read from the machine's transition or output table."""

    def _latex(self, printer):
        return r"\mathrm{table}\left(" + ", ".join(printer._print(a) for a in self.args) + r"\right)"


def to_sympy(expr: str, names: Sequence[str]) -> sympy.Basic:
    """The formula as a sympy object: arithmetic as expressions, bit operations as Boolean logic."""
    syms = {n: sympy.Symbol(n, integer=True) for n in names}
    return _sym(parse(expr), syms)


def _sym(node: ast.AST, syms: dict, boolean: bool = False):
    if boolean:
        return _sym_bool(node, syms)
    match node:
        case ast.Constant(value=v) if isinstance(v, int):
            return sympy.Integer(v)
        case ast.Name(id=n) if n in syms:
            return syms[n]
        case ast.UnaryOp(op=ast.USub(), operand=o):
            return -_sym(o, syms)
        case ast.BinOp(left=l_, op=ast.BitAnd() | ast.BitOr() | ast.BitXor(), right=r_):
            return Iverson(_sym_bool(node, syms))
        case ast.BinOp(left=l_, op=op, right=r_):
            a, b = _sym(l_, syms), _sym(r_, syms)
            match op:
                case ast.Add():
                    return a + b
                case ast.Sub():
                    return a - b
                case ast.Mult():
                    return a * b
                case ast.FloorDiv():
                    return sympy.floor(a / b)
                case ast.Mod():
                    return sympy.Mod(a, b)
        case ast.Compare():
            return Iverson(_sym_bool(node, syms))
        case ast.Call(func=ast.Name(id="int"), args=[arg]):
            return Iverson(_sym_bool(arg, syms))
        case ast.Call(func=ast.Name(id="abs"), args=[arg]):
            return sympy.Abs(_sym(arg, syms))
        case ast.Call(func=ast.Name(id="argmax"), args=args):
            return Argmax(*[_sym(a, syms) for a in args])
        case ast.Call(func=ast.Name(id=fn), args=args) if fn in ("min", "max"):
            return (sympy.Min if fn == "min" else sympy.Max)(*[_sym(a, syms) for a in args])
        case ast.Subscript(slice=key):
            parts = key.elts if isinstance(key, ast.Tuple) else [key]
            return Lookup(*[_sym(p, syms) for p in parts])
    raise ValueError(f"cannot convert {ast.unparse(node)!r} to sympy")


def _sym_bool(node: ast.AST, syms: dict):
    """A 0/1-valued expression as sympy logic: & | ^ as And/Or/Xor, ``1 - p`` as Not(p)."""
    match node:
        case ast.Constant(value=v) if v in (0, 1):
            return sympy.true if v else sympy.false
        case ast.Name(id=n) if n in syms:
            return syms[n]
        case ast.BinOp(left=ast.Constant(value=1), op=ast.Sub(), right=r_):
            return sympy.Not(_sym_bool(r_, syms))
        case ast.BinOp(left=l_, op=ast.BitAnd() | ast.BitOr() | ast.BitXor() as op, right=r_):
            f = {ast.BitAnd: sympy.And, ast.BitOr: sympy.Or, ast.BitXor: sympy.Xor}[type(op)]
            return f(_sym_bool(l_, syms), _sym_bool(r_, syms))
        case ast.Call(func=ast.Name(id="int"), args=[arg]):
            return _sym_bool(arg, syms)
        case ast.Compare(left=first, ops=ops, comparators=rest):
            rel = {ast.Eq: sympy.Eq, ast.NotEq: sympy.Ne, ast.Lt: sympy.Lt, ast.LtE: sympy.Le,
                   ast.Gt: sympy.Gt, ast.GtE: sympy.Ge}
            vals = [_sym(first, syms)] + [_sym(c, syms) for c in rest]
            pairs = zip(ops, vals[:-1], vals[1:], strict=True)
            terms = [rel[type(o)](a, b, evaluate=False) for o, a, b in pairs]
            return sympy.And(*terms) if len(terms) > 1 else terms[0]
    return sympy.Eq(_sym(node, syms), 1, evaluate=False)


def to_latex(expr: str, names: Sequence[str]) -> str:
    """The formula in LaTeX (via sympy.latex); the source in \\texttt if sympy cannot read it."""
    try:
        return sympy.latex(to_sympy(expr, names))
    except (ValueError, TypeError, AttributeError) as exc:
        log.debug("no LaTeX for %s: %s", expr, exc)
        return r"\texttt{" + expr.replace("_", r"\_").replace("%", r"\%") + "}"


def machine_latex(machine: dict) -> str:
    """All formulas of a machine as one aligned LaTeX block: updates with an arrow, outputs with =."""
    lines = []
    for f in machine["updates"] + machine["outputs"]:
        arrow = r"\leftarrow" if f in machine["updates"] else "="
        lhs = sympy.latex(sympy.Symbol(f["name"]))
        rhs = f["latex"] if f["exact"] else r"\text{no exact fit}"
        lines.append(f"{lhs} &{arrow} {rhs}")
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def sympy_to_python(e: sympy.Basic) -> str:
    """Print an integer-valued sympy expression as Python with // and %; raises ValueError if it cannot."""
    return _py(e)[0]


_P_ADD, _P_MUL, _P_UNARY, _P_POW, _P_ATOM = 10, 20, 30, 40, 100


def _py(e) -> tuple[str, int]:
    if isinstance(e, sympy.Integer):
        return str(int(e)), (_P_UNARY if e < 0 else _P_ATOM)
    if isinstance(e, sympy.Symbol):
        return e.name, _P_ATOM
    if isinstance(e, sympy.Add):
        terms = e.as_ordered_terms()
        out, _ = _py(terms[0])
        for t in terms[1:]:
            coeff, rest = t.as_coeff_Mul()
            if coeff < 0:
                s, p = _py(-t)
                out += " - " + (f"({s})" if p <= _P_ADD else s)
            else:
                s, p = _py(t)
                out += " + " + (f"({s})" if p < _P_ADD else s)
        return out, _P_ADD
    if isinstance(e, sympy.Mul):
        coeff, rest = e.as_coeff_Mul()
        if not coeff.is_Integer:
            raise ValueError(f"non-integer coefficient in {e}")
        factors = sympy.Mul.make_args(rest)
        parts = []
        for f in factors:
            s, p = _py(f)
            parts.append(f"({s})" if p < _P_MUL else s)
        body = " * ".join(parts)
        if coeff == 1:
            return body, _P_MUL
        if coeff == -1:
            bare = len(factors) == 1 and _py(factors[0])[1] >= _P_UNARY
            return "-" + (body if bare else f"({body})"), _P_UNARY
        return f"{int(coeff)} * {body}", _P_MUL
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 0:
        s, p = _py(e.base)
        return (f"({s})" if p <= _P_POW else s) + f" ** {int(e.exp)}", _P_POW
    if isinstance(e, sympy.floor):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        (ns, npr), (ds, dp) = _py(num), _py(den)
        return (f"({ns})" if npr < _P_MUL else ns) + " // " + (f"({ds})" if dp <= _P_MUL else ds), _P_MUL
    if isinstance(e, sympy.Mod):
        (a, ap), (b, bp) = _py(e.args[0]), _py(e.args[1])
        return (f"({a})" if ap < _P_MUL else a) + " % " + (f"({b})" if bp <= _P_MUL else b), _P_MUL
    if isinstance(e, sympy.Abs):
        return f"abs({_py(e.args[0])[0]})", _P_ATOM
    if isinstance(e, sympy.Min | sympy.Max):
        fn = "min" if isinstance(e, sympy.Min) else "max"
        return f"{fn}({', '.join(_py(a)[0] for a in e.args)})", _P_ATOM
    raise ValueError(f"cannot print {e!r} as integer Python")


def tidy(expr: str, names: Sequence[str], X: np.ndarray, target: np.ndarray) -> str:
    """sympy-simplify an arithmetic formula; keep the result only if it is exact on the table and shorter.

    Boolean formulas, comparisons and tables are returned unchanged (they come out of their fitters minimal).
    """
    try:
        e = to_sympy(expr, names)
        if e.has(Iverson, Lookup, Argmax) or not isinstance(e, sympy.Expr):
            return expr
        simpler = sympy_to_python(sympy.simplify(sympy.nsimplify(e, rational=True)))
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        log.debug("tidy kept %s: %s", expr, exc)
        return expr
    if simpler != expr and expression_length(simpler) < expression_length(expr) \
            and is_exact(simpler, names, X, target):
        return simpler
    return expr


# ---------------------------------------------------------------------------------------------------------
# The program


ARGMAX_DEF = '''def argmax(*scores):
    """The index of the first largest score: how a classifier's output is read."""
    return max(range(len(scores)), key=scores.__getitem__)
'''

TABLE_CLASS = '''class Table(dict):
    """A lookup table read off the network; a key it never reached gets the table's most common value."""

    def __init__(self, entries, default):
        super().__init__(entries)
        self.default = default

    def __missing__(self, key):
        return self.default
'''


def _table_literal(name: str, rows: list[list[int]]) -> str:
    """A table constant ``NAME = Table({key: value, ...}, default=...)`` wrapped to readable lines; the
    default (the most common value) answers keys the network never reached, so the program never crashes."""
    values = [row[-1] for row in rows]
    default = max(sorted(set(values)), key=values.count)
    items = []
    for row in rows:
        key = row[:-1]
        k = str(key[0]) if len(key) == 1 else "(" + ", ".join(map(str, key)) + ")"
        items.append(f"{k}: {row[-1]}")
    lines, line = [], ""
    for it in items:
        if len(line) + len(it) + 2 > 100:
            lines.append(line.rstrip())
            line = ""
        line += it + ", "
    lines.append(line.rstrip().rstrip(","))
    return f"{name} = Table({{\n" + "\n".join("    " + ln for ln in lines if ln) + f"\n}}, default={default})\n"


def names_in(expr: str) -> set[str]:
    """The variable (and table) names a formula reads."""
    return {n.id for n in ast.walk(parse(expr)) if isinstance(n, ast.Name)}


def live_state(machine: dict) -> list[str]:
    """State coordinates the outputs read, directly or through the updates of other live coordinates.
    The rest can change nothing the program returns (dead code), so the program leaves them out."""
    state = machine["state_names"]
    updates = {u["name"]: u for u in machine["updates"]}
    frontier = [v for o in machine["outputs"] for v in names_in(o["expression"]) if v in updates]
    live: set[str] = set()
    while frontier:
        v = frontier.pop()
        if v not in live:
            live.add(v)
            frontier += [w for w in names_in(updates[v]["expression"]) if w in updates and w not in live]
    return [v for v in state if v in live]


def emit(machine: dict) -> str:
    """The program for a fitted machine (the content of formulas.json): ``def f(xs)`` with no imports.

    State coordinates no output depends on are left out. Raises ValueError if a formula the program runs
    is not exact: a program is only emitted from exact parts.
    """
    keep = live_state(machine) or machine["state_names"][:1]   # a constant output still has a state line
    if keep != machine["state_names"]:
        init = dict(zip(machine["state_names"], machine["initial_state"], strict=True))
        machine = machine | {"state_names": keep, "initial_state": [init[v] for v in keep],
                             "updates": [u for u in machine["updates"] if u["name"] in keep]}
    state, inputs = machine["state_names"], machine["input_names"]
    outputs = machine["output_names"]
    formulas = machine["updates"] + machine["outputs"]
    inexact = [f["name"] for f in formulas if not f["exact"]]
    if inexact:
        raise ValueError(f"cannot emit a program: no exact formula for {', '.join(inexact)}")
    init = machine["initial_state"]

    doc = [f'"""{machine["task"]}: a program synthesized by MIPS from the hidden states of a trained RNN.',
           ""]
    doc += textwrap.wrap(f"State {', '.join(state)} ({machine.get('state_description', 'integer state')}), "
                         f"starting at {', '.join(f'{s} = {v}' for s, v in zip(state, init, strict=True))}; "
                         f"input {', '.join(inputs)}; output {', '.join(outputs)}.", 100)
    width = max(len(f["name"]) + 4 + len(f["expression"]) for f in formulas)
    for f in formulas:
        line = f"{f['name']} <- {f['expression']}"
        if len(line) > 70:
            line = f"{f['name']} <- (see code)"
        doc.append(f"  {line.ljust(min(width, 70))}   [{METHOD_NAMES.get(f['method'], f['method'])}]")
    doc.append('"""')
    parts = ["\n".join(doc), ""]
    tables = [f for f in formulas if f.get("table")]
    if any("argmax(" in f["expression"] for f in formulas):
        parts.append(ARGMAX_DEF)
    if tables:
        parts.append(TABLE_CLASS)
    for f in tables:
        parts.append(_table_literal(f["table_name"], f["table"]))
    body = ["def f(xs):"]
    body.append(f"    {', '.join(state)} = {', '.join(str(v) for v in init)}")
    body.append("    ys = []")
    body.append("    for x in xs:")
    if len(inputs) > 1:
        body.append(f"        {', '.join(inputs)} = x")
    ups = machine["updates"]
    line = f"        {', '.join(u['name'] for u in ups)} = {', '.join(u['expression'] for u in ups)}"
    if len(ups) == 1 or len(line) <= 100:
        body.append(line)
    else:
        for u in ups:
            body.append(f"        new_{u['name']} = {u['expression']}")
        names = ", ".join(u["name"] for u in ups)
        body.append(f"        {names} = {', '.join('new_' + u['name'] for u in ups)}")
    for o in machine["outputs"]:
        body.append(f"        {o['name']} = {o['expression']}")
    result = outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ")"
    body.append(f"        ys.append({result})")
    body.append("    return ys")
    source = "\n".join(parts) + "\n\n" + "\n".join(body) + "\n"
    check_program(source)
    return source


def check_program(source: str) -> None:
    """Raise ValueError unless source parses, imports nothing and defines ``f``."""
    tree = ast.parse(source)
    if any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(tree)):
        raise ValueError("an emitted program must not import anything")
    if not any(isinstance(n, ast.FunctionDef) and n.name == "f" for n in tree.body):
        raise ValueError("an emitted program must define f(xs)")


def program_lines(source: str) -> int:
    """Non-blank lines of code in ``def f`` (the docstring and table constants are not counted)."""
    lines = source.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("def f("))
    return sum(1 for ln in lines[start:] if ln.strip())
