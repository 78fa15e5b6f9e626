"""Mutated input for the Python entry points, one case at a time.

Four entry points take input from outside:

- ``derivative``: ``_native.derivative(name, [bytes, …])`` with mutated
  ``Expr.to_bytes()`` payloads (and, now and then, a mutated marker name);
- ``dataframe``: ``grad``/``jvp``/``vjp`` on the ``Expr`` that PyPI
  ``datafusion`` decodes from mutated bytes (cases it refuses to decode never
  reach this package);
- ``differentiate``: ``differentiate(expression, column)`` with mutated SQL text;
- ``rewrite_sql``: ``rewrite_sql(query, tables)`` with mutated queries.

Each case must raise ``AutogradError`` or return something valid: bytes that
decode to an expression, SQL that plans wherever its input does and, where the
primal is smooth, a derivative equal to DataFusion's finite differences of the
primal. A panic surfacing as pyo3's ``PanicException`` fails the case.

``tests/test_fuzz.py`` runs ranges of cases in child processes, started as
``python tests/fuzzing.py <entry point> <first case> <end>``, so that a crash
is bisected to its case and reported with a reproducer.
"""

from __future__ import annotations

import math
import os
import random
import string
import sys
from decimal import Decimal
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
from datafusion import Expr, SessionContext, SQLOptions, col, lit
from datafusion import functions as f

import datafusion_autograd as ag
from datafusion_autograd import AutogradError, _native
from datafusion_autograd.tables import catalog

ENTRY_POINTS = ("derivative", "dataframe", "differentiate", "rewrite_sql")
DEFAULT_SEED = 0x5EED0FF1
HUGE = 1 << 20
STEP = 1e-4

# Valid inputs, mutated by the cases.
EXPRESSIONS: list[tuple[str, Expr, str, Optional[Expr]]] = [
    ("grad", f.sin(col("x")) * col("y") + f.exp(col("x") / lit(4.0)), "x", None),
    ("grad", f.power(col("x"), lit(3)) - f.ln(f.abs(col("x")) + lit(1.0)), "x", None),
    ("jvp", f.tanh(col("x") * col("y")), "x", col("dx")),
    ("vjp", f.sqrt(col("x") * col("x") + lit(1.0)) * f.cos(col("y")), "y", lit(0.5)),
    ("grad", f.when(col("x") > lit(0.0), col("x") * col("x")).otherwise(lit(0.0) - col("x")), "x", None),
    ("grad", f.coalesce(col("x"), col("y")) * f.greatest(col("x"), lit(0.5)), "x", None),
    ("grad", f.atan2(col("y"), col("x")) + col("i") * col("x"), "x", None),
    ("grad", col("x") * lit(Decimal("1.50")), "x", None),
]
SQL_EXPRESSIONS: list[tuple[str, str]] = [
    ("sin(x) * y + exp(x / 4)", "x"),
    ("power(x, 3) - ln(abs(x) + 1)", "x"),
    ("tanh(x * y) * dx", "x"),
    ("CASE WHEN x > 0 THEN x * x ELSE -x END", "x"),
    ("coalesce(x, y) * greatest(x, 0.5)", "x"),
    ("grad(x * x * x, x) + y", "x"),
    ("log(2.0, x) + x % 3", "x"),
    ("nullif(x, 0) + nvl2(y, x, 1)", "x"),
    ("sqrt(x * x + 1) * cos(y) / (1 + y * y)", "y"),
    ("atan2(y, x) * character_length('it''s' || s)", "x"),
]
QUERIES: list[str] = [
    "SELECT grad(sin(x) * y, x) AS d FROM t",
    "SELECT jvp(exp(x), x, dx), vjp(x * y, y, 2) FROM t WHERE x > 0",
    "WITH a AS (SELECT x, grad(x * x, x) AS g FROM t) SELECT SUM(g) FROM a",
    "SELECT /* grad( */ 'grad(' AS s, grad(x * x, x) AS \"grad(\" FROM t -- grad(\n",
    "SELECT i, grad FROM gradient('SELECT SUM(w * w * w) FROM w', 'w.w') ORDER BY i",
    "SELECT grad(grad(cos(x), x), x) FROM t ORDER BY x",
    "SELECT t.i, grad(t.x * u.x, t.x) FROM t JOIN t AS u ON t.i = u.i",
    "SELECT (SELECT SUM(grad(q.x * q.y, q.y)) FROM t q WHERE q.i = p.i) FROM t p",
]
TOKENS = [
    "(", ")", ",", "'", '"', "--", "/*", "*/", "\n", "\0", ";", "grad(", "jvp(", "vjp(", "gradient(",
    "x", "y", "t.x", "1e309", "-", "NULL", "NaN", "CASE", "WHEN", "END", "é", "𝑥", "\\", "::", "$1",
]


def seed() -> int:
    return int(os.environ.get("AUTOGRAD_FUZZ_SEED", str(DEFAULT_SEED)), 0)


def rng_for(entry: str, index: int) -> random.Random:
    """The generator of one case: cases are independent of each other."""
    return random.Random(f"{seed()}:{entry}:{index}")


def mutate_bytes(rng: random.Random, data: bytes, donors: list[bytes]) -> tuple[bytes, str]:
    """A random mutation of ``data`` and its description."""
    n = max(len(data), 1)
    kind = rng.choices(
        ["truncate", "flip", "overwrite", "splice", "duplicate", "delete", "junk", "empty", "huge"],
        weights=[14, 28, 14, 15, 6, 6, 10, 2, 2],
    )[0]
    out = bytearray(data)
    if kind == "truncate":
        at = rng.randrange(n)
        return bytes(out[:at]), f"truncated to {at} bytes"
    if kind == "flip":
        bits = [(rng.randrange(n), rng.randrange(8)) for _ in range(rng.randint(1, 4))]
        for byte, bit in bits:
            if byte < len(out):
                out[byte] ^= 1 << bit
        return bytes(out), f"bits flipped at byte.bit {bits}"
    if kind == "overwrite":
        boundaries = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]
        writes = [(rng.randrange(n), rng.choice(boundaries)) for _ in range(rng.randint(1, 3))]
        for at, value in writes:
            if at < len(out):
                out[at] = value
        return bytes(out), f"bytes overwritten {writes}"
    if kind == "splice":
        donor = rng.randrange(len(donors))
        prefix, start = rng.randrange(n + 1), rng.randrange(len(donors[donor]) + 1)
        spliced = bytes(out[:prefix]) + donors[donor][start:]
        return spliced, f"first {prefix} bytes, then donor #{donor} from {start}"
    if kind == "duplicate":
        start, length, to = rng.randrange(n), rng.randint(1, 64), rng.randrange(n + 1)
        out[to:to] = data[start : start + length]
        return bytes(out), f"{length} bytes from {start} copied in at {to}"
    if kind == "delete":
        start, length = rng.randrange(n), rng.randint(1, 16)
        del out[start : start + length]
        return bytes(out), f"{length} bytes deleted at {start}"
    if kind == "junk":
        length = rng.randrange(300)
        return rng.randbytes(length), f"{length} random bytes"
    if kind == "empty":
        return b"", "empty"
    return (data * (HUGE // n + 1))[:HUGE], f"repeated to {HUGE} bytes"


def mutate_text(rng: random.Random, text: str, donors: list[str]) -> tuple[str, str]:
    """A random mutation of SQL text and its description."""
    n = max(len(text), 1)
    kinds = {
        "truncate": 12, "delete": 12, "duplicate": 8, "insert": 20, "replace": 14, "swap": 6,
        "splice": 12, "junk": 10, "empty": 2, "wide": 2, "huge": 2,
    }
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    if kind == "truncate":
        at = rng.randrange(n)
        return text[:at], f"truncated to {at} characters"
    if kind == "delete":
        start, length = rng.randrange(n), rng.randint(1, 8)
        return text[:start] + text[start + length :], f"{length} characters deleted at {start}"
    if kind == "duplicate":
        start, length, to = rng.randrange(n), rng.randint(1, 16), rng.randrange(n + 1)
        copied = text[:to] + text[start : start + length] + text[to:]
        return copied, f"{length} characters from {start} copied in at {to}"
    if kind in ("insert", "replace"):
        at, token = rng.randrange(n + 1), rng.choice(TOKENS)
        end = at + (kind == "replace")
        verb = "inserted" if kind == "insert" else "written"
        return text[:at] + token + text[end:], f"{token!r} {verb} at {at}"
    if kind == "swap":
        a, b = rng.randrange(n), rng.randrange(n)
        chars = list(text)
        if a < len(chars) and b < len(chars):
            chars[a], chars[b] = chars[b], chars[a]
        return "".join(chars), f"characters {a} and {b} swapped"
    if kind == "splice":
        donor = rng.randrange(len(donors))
        prefix, start = rng.randrange(n + 1), rng.randrange(len(donors[donor]) + 1)
        spliced = text[:prefix] + donors[donor][start:]
        return spliced, f"first {prefix} characters, then donor #{donor} from {start}"
    if kind == "junk":
        alphabet = string.printable + "éλ𝑥\0"
        length = rng.randrange(200)
        return "".join(rng.choice(alphabet) for _ in range(length)), f"{length} random characters"
    if kind == "empty":
        return "", "empty"
    if kind == "wide":
        wide = "coalesce(" + ", ".join(["x"] * 500) + ")"
        return text.replace("x", wide, 1), "first x replaced by coalesce of 500 x"
    padding = rng.choice([" ", "/* pad */"])
    return text + padding * (HUGE // len(padding)), f"{padding!r} appended up to {HUGE} characters"


class Checker:
    """A session with the tables every case reads, and the numeric checks."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        magnitudes = rng.uniform(0.3, 2.5, 6)
        self.data = {
            "x": magnitudes * np.array([1, -1, 1, -1, 1, -1]),
            "y": rng.uniform(-2.0, 2.0, 6),
            "dx": rng.uniform(-1.0, 1.0, 6),
            "i": np.arange(1, 7),
            "s": ["abc", "xyz", "abc", "q", "", "é"],
        }
        self.ctx = SessionContext()
        self.ctx.register_record_batches("t", [[pa.RecordBatch.from_pydict(self.data)]])
        parameters = pa.RecordBatch.from_pydict({"i": [0, 1], "w": [1.5, -2.0]})
        self.ctx.register_record_batches("w", [[parameters]])
        ag.register(self.ctx)
        self.stock = SessionContext()
        for name in ("t", "w"):
            self.stock.register_record_batches(name, [self.ctx.table(name).collect()])
        for udf in (ag.grad_udf, ag.jvp_udf, ag.vjp_udf):
            self.stock.register_udf(udf)
        self.read_only = (
            SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
        )

    def values(self, select: Callable[[], Any]) -> Optional[np.ndarray]:
        """One DOUBLE column, or None if it does not plan or run."""
        try:
            result = select().to_pydict()
        except Exception:
            return None
        column = next(iter(result.values()))
        return np.array([math.nan if v is None else v for v in column], dtype=float)

    def expr_values(self, expr: Expr, wrt: str = "x", h: float = 0.0) -> Optional[np.ndarray]:
        table = self.ctx.table("t")
        if h:
            table = table.with_column(wrt, col(wrt) + lit(h))
        return self.values(lambda: table.select(expr.cast(pa.float64()).alias("v")))

    def sql_values(self, expr: str, wrt: str = "x", h: float = 0.0) -> Optional[np.ndarray]:
        columns = ", ".join(f"{c} + {h!r} AS {c}" if c == wrt else c for c in self.data)
        query = f"SELECT CAST(({expr}\n) AS DOUBLE) AS v FROM (SELECT {columns} FROM t) AS t"
        return self.values(lambda: self.ctx.sql_with_options(query, self.read_only))

    def finite_differences(
        self,
        primal: Callable[[float], Optional[np.ndarray]],
        derivative: np.ndarray,
        multiplier: np.ndarray,
        subexpressions: Callable[[], list[Expr]],
    ) -> int:
        """How many points match; raises AssertionError on a mismatch."""
        shifted = [primal(h) for h in (STEP, -STEP, STEP / 2, -STEP / 2)]
        if any(s is None for s in shifted):
            return 0
        fp, fm, fhp, fhm = shifted
        with np.errstate(all="ignore"):
            coarse, fine = (fp - fm) / (2 * STEP), (fhp - fhm) / STEP
            expected = multiplier * (4 * fine - coarse) / 3
        finite = np.isfinite(coarse) & np.isfinite(fine) & np.isfinite(multiplier)
        # Where halving the step changes the estimate, the primal is not smooth
        # enough at that point for differences to say anything.
        smooth = finite & (np.abs(coarse - fine) <= 1e-6 * (1 + np.abs(fine)))
        matched = 0
        for row in np.flatnonzero(smooth):
            if abs(derivative[row] - expected[row]) <= 1e-5 * (1 + abs(expected[row])):
                matched += 1
                continue
            # The chain rule through an infinite intermediate (exp(x / 0) at
            # x < 0 is exp(-inf) = 0, times d(x / 0) = inf) gives NaN in IEEE
            # arithmetic, as the formula says, although the primal is smooth.
            assert self.non_finite_at(subexpressions(), row), (
                f"at row {row} the derivative is {derivative[row]}, "
                f"finite differences give {expected[row]}"
            )
        return matched

    def non_finite_at(self, subexpressions: list[Expr], row: int) -> bool:
        """Whether one of the (numeric) subexpressions is infinite, NaN or NULL at ``row``."""
        for expr in subexpressions:
            values = self.expr_values(expr)
            if values is not None and not np.isfinite(values[row]):
                return True
        return False

    def plan_rewritten(self, rewritten: str) -> Any:
        """The rewritten statement planned on the stock context."""
        return self.stock.sql_with_options(rewritten, self.read_only)

    def subexpressions_of_sql(self, expr: str) -> list[Expr]:
        """The subexpressions of SQL text, as DataFusion plans it over ``t``."""
        plan = self.ctx.sql(f"SELECT {expr}\n FROM t").logical_plan()
        return subexpressions(plan.to_variant().projections()[0])


def subexpressions(expr: Expr) -> list[Expr]:
    """``expr`` and everything below it."""
    found = [expr]
    if str(expr.rex_type()) == "RexType.Call":
        for operand in expr.rex_call_operands():
            # Operands come back as the binding's raw expressions.
            found += subexpressions(operand if isinstance(operand, Expr) else Expr(operand))
    return found


def run_case(entry: str, index: int, checker: Checker) -> str:
    """Runs case ``index`` of ``entry``; returns its outcome, raises AssertionError on failure.

    The first cases of every entry point are its valid inputs, unchanged.
    """
    rng = rng_for(entry, index)
    run, inputs = {
        "derivative": (run_bytes_case, EXPRESSIONS),
        "dataframe": (run_bytes_case, EXPRESSIONS),
        "differentiate": (run_differentiate_case, SQL_EXPRESSIONS),
        "rewrite_sql": (run_rewrite_case, QUERIES),
    }[entry]
    unchanged = index < len(inputs)
    chosen = inputs[index] if unchanged else rng.choice(inputs)
    outcome, description = run(entry, chosen, None if unchanged else rng, checker)
    assert outcome in ("checked", "ran") or not unchanged, (
        f"a valid input was neither checked numerically nor run: {outcome}\n{description}"
    )
    return outcome


def run_bytes_case(
    entry: str, chosen: Any, rng: Optional[random.Random], checker: Checker
) -> tuple[str, str]:
    """``_native.derivative`` (``entry == "derivative"``) or the DataFrame API on mutated bytes."""
    marker, expr, wrt, extra = chosen
    args = [expr, col(wrt)] + ([extra] if extra is not None else [])
    payloads = [a.to_bytes() for a in args]
    which, name, how = 0, marker, "unchanged"
    if rng is not None:
        which = 0 if rng.random() < 0.7 else rng.randrange(len(payloads))
        donors = [e.to_bytes() for _, e, _, _ in EXPRESSIONS]
        payloads[which], how = mutate_bytes(rng, payloads[which], donors)
        if entry == "derivative" and rng.random() < 0.05:
            name = "".join(rng.choice("gradjvpé\0 ") for _ in range(rng.randrange(6)))
    call_text = f"{name}({', '.join(str(a) for a in args)})"
    description = f"{call_text}, argument {which} {how}: {payloads[which][:4096].hex()}"
    if entry == "derivative":
        result = call(lambda: _native.derivative(name, payloads), description)
        if result is None:
            return "error", description
        try:
            derivative = Expr.from_bytes(result)
        except Exception as error:
            raise AssertionError(f"the result does not decode: {error}\n{description}")
        try:
            primal = Expr.from_bytes(payloads[0])
        except Exception:
            return "derivative", description
    else:
        try:
            args[which] = Expr.from_bytes(payloads[which])
        except Exception:
            return "refused by datafusion", description
        function = {"grad": ag.grad, "jvp": ag.jvp, "vjp": ag.vjp}[marker]
        derivative = call(lambda: function(*args), description)
        if derivative is None:
            return "error", description
        primal = args[0]
    # Only a mutated primal of the valid call can be checked against differences.
    if which != 0 or name != marker:
        return "derivative", description
    values = checker.expr_values(derivative)
    if values is None:
        assert checker.expr_values(primal) is None, (
            f"the derivative does not evaluate where the primal does: {description}"
        )
        return "derivative", description
    multiplier = np.ones(6) if extra is None else checker.expr_values(extra)
    checked = checker.finite_differences(
        lambda h: checker.expr_values(primal, wrt, h),
        values,
        multiplier,
        lambda: subexpressions(primal),
    )
    return "checked" if checked else "derivative", description


def run_differentiate_case(
    entry: str, chosen: Any, rng: Optional[random.Random], checker: Checker
) -> tuple[str, str]:
    """``differentiate`` on mutated SQL text (or, now and then, a mutated column name)."""
    text, wrt = chosen
    how = "unchanged"
    if rng is not None and rng.random() < 0.9:
        text, how = mutate_text(rng, text, [e for e, _ in SQL_EXPRESSIONS])
    elif rng is not None:
        wrt, how = mutate_text(rng, wrt, ["x", "y", "t.x"])
    description = f"differentiate({text[:4096]!r}, {wrt[:200]!r}) — {how}"
    result = call(lambda: ag.differentiate(text, wrt), description)
    if result is None:
        return "error", description
    values = checker.sql_values(result)
    if values is None:
        assert checker.sql_values(text) is None, (
            f"the derivative {result[:500]!r} does not evaluate where the primal does: {description}"
        )
        return "derivative", description
    if wrt not in ("x", "y", "dx"):
        return "derivative", description
    checked = checker.finite_differences(
        lambda h: checker.sql_values(text, wrt, h),
        values,
        np.ones(6),
        lambda: checker.subexpressions_of_sql(text),
    )
    return "checked" if checked else "derivative", description


def run_rewrite_case(
    entry: str, chosen: Any, rng: Optional[random.Random], checker: Checker
) -> tuple[str, str]:
    """``rewrite_sql`` on a mutated query: the rewritten query must plan
    wherever the query does (on a stock context with the markers, which plans but never
    differentiates them; it has no ``gradient``), and must not leave a marker for execution to
    find."""
    query, how = chosen, "unchanged"
    if rng is not None:
        query, how = mutate_text(rng, query, QUERIES)
    description = f"rewrite_sql({query[:4096]!r}) — {how}"
    result = call(lambda: ag.rewrite_sql(query, catalog(checker.ctx)), description)
    if result is None:
        return "error", description
    try:
        checker.stock.sql_with_options(query, checker.read_only)
        query_plans = True
    except Exception:
        query_plans = False
    try:
        rewritten = checker.plan_rewritten(result)
    except Exception as error:
        if not query_plans:
            return "rewritten", description
        raise AssertionError(
            f"the rewritten query does not plan where the query does: {error}\n"
            f"  {result!r}\n{description}"
        )
    if "\0" in result:
        # PyPI datafusion 54 aborts the process when it hands pyarrow a result
        # whose column name holds a NUL (arrow-rs unwraps CString::new inside
        # an extern "C" callback): `SELECT 1 AS "a\0b"` is enough. Such
        # queries are planned, not run.
        return "planned", description
    try:
        rewritten.collect()
    except Exception as error:
        assert _native.NOT_SIMPLIFIED not in str(error), (
            f"a marker was left in: {result!r}\n{description}"
        )
        return "planned", description
    return "ran", description


def call(function: Callable[[], Any], description: str) -> Any:
    """The result of calling one entry point, or None if it raised AutogradError."""
    try:
        return function()
    except AutogradError:
        return None
    except BaseException as error:  # PanicException is a BaseException
        raise AssertionError(
            f"{type(error).__name__} instead of AutogradError: {error}\n{description}"
        ) from error


def main(entry: str, start: int, end: int) -> None:
    checker = Checker()
    tally: dict[str, int] = {}
    for index in range(start, end):
        try:
            outcome = run_case(entry, index, checker)
        except AssertionError as failure:
            print(f"case {index} of {entry} (seed {seed():#x}) failed: {failure}", file=sys.stderr)
            print(
                f"rerun: AUTOGRAD_FUZZ_SEED={seed():#x} AUTOGRAD_FUZZ_ONLY={index} "
                f".venv/bin/python -m pytest tests/test_fuzz.py -k {entry}",
                file=sys.stderr,
            )
            sys.exit(1)
        tally[outcome] = tally.get(outcome, 0) + 1
    print(repr(tally))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
