"""Derivative SQL for other engines, run in the engines themselves: DataFusion,
DuckDB, SQLite (Python's ``sqlite3``) and a PostgreSQL server started for the
session. Every rule case of the Rust tests is checked in every engine against
its analytic derivative (``reference_derivatives.json``, written from
``crates/autograd/tests/sql/rules.rs``); the functions an engine spells
differently are checked against numpy.
"""

from __future__ import annotations

import json
import sqlite3
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from datafusion import SessionContext

from datafusion_autograd import DIALECTS, AutogradError, Dialect, differentiate, primitives

REFERENCE = json.loads((Path(__file__).parent / "reference_derivatives.json").read_text())["cases"]

Points = Sequence[float]


class Engine:
    """One engine, evaluating a SQL expression over a table ``pts(id, x, y)``."""

    def __init__(self, dialect: Dialect, evaluate: Callable[[str, Points, Points], np.ndarray]):
        self.dialect = dialect
        self.evaluate = evaluate

    def __repr__(self) -> str:
        return self.dialect


def as_floats(values: Sequence[Any]) -> np.ndarray:
    """Engine results as floats (PostgreSQL's NUMERIC arrives as Decimal), NULL as NaN."""
    return np.array([np.nan if v is None else float(v) for v in values])


def datafusion_engine() -> Engine:
    def evaluate(sql: str, xs: Points, ys: Points) -> np.ndarray:
        ctx = SessionContext()
        batch = pa.RecordBatch.from_pydict({"id": list(range(len(xs))), "x": xs, "y": ys})
        ctx.register_record_batches("pts", [[batch]])
        return as_floats(ctx.sql(f"SELECT {sql} AS d FROM pts ORDER BY id").to_pydict()["d"])

    return Engine("datafusion", evaluate)


def dbapi_engine(dialect: Dialect, connection: Any, placeholder: str) -> Engine:
    """An engine behind a Python DB-API connection."""

    def evaluate(sql: str, xs: Points, ys: Points) -> np.ndarray:
        cursor = connection.cursor()
        cursor.execute("DROP TABLE IF EXISTS pts")
        cursor.execute("CREATE TABLE pts (id INTEGER, x DOUBLE PRECISION, y DOUBLE PRECISION)")
        row = ", ".join([placeholder] * 3)
        cursor.executemany(f"INSERT INTO pts VALUES ({row})", list(zip(range(len(xs)), xs, ys)))
        cursor.execute(f"SELECT {sql} FROM pts ORDER BY id")
        return as_floats([d for (d,) in cursor.fetchall()])

    return Engine(dialect, evaluate)


def sqlite_connection() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    (math,) = connection.execute("SELECT sqlite_compileoption_used('ENABLE_MATH_FUNCTIONS')").fetchone()
    assert math == 1, (
        f"Python's SQLite {sqlite3.sqlite_version} was built without its math functions "
        "(SQLITE_ENABLE_MATH_FUNCTIONS), which derivative SQL for SQLite calls"
    )
    return connection


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest) -> Engine:
    dialect = request.param
    if dialect == "datafusion":
        return datafusion_engine()
    if dialect == "duckdb":
        return dbapi_engine(dialect, duckdb.connect(), "?")
    if dialect == "sqlite":
        return dbapi_engine(dialect, sqlite_connection(), "?")
    if dialect == "postgresql":
        return dbapi_engine(dialect, request.getfixturevalue("postgresql"), "%s")
    raise AssertionError(f"no engine for the dialect {dialect}")


def case_id(case: dict[str, Any]) -> str:
    return f"{case['primitive']}: d/d{case['wrt']} {case['f']}"


@pytest.mark.parametrize("case", REFERENCE, ids=case_id)
def test_rule_derivatives_in_every_engine(engine: Engine, case: dict[str, Any]) -> None:
    sql = differentiate(case["f"], case["wrt"], engine.dialect)
    got = engine.evaluate(sql, case["x"], case["y"])
    np.testing.assert_allclose(got, case["d"], rtol=1e-9, atol=1e-9, err_msg=f"{engine}: {sql}")


def test_the_reference_table_covers_every_primitive() -> None:
    tested = {case["primitive"] for case in REFERENCE}
    assert set(primitives()) <= tested
    assert len(REFERENCE) >= 60


# Expressions whose derivative keeps a function or operator that some engine
# spells differently, with the derivative written in numpy; x in [-2, 2],
# y in [0.2, 2].
SPELLED = [
    ("x * signum(y - 1.0) / 2", "x", lambda x, y: np.sign(y - 1.0) / 2),
    ("x * abs(y - 1.0)", "y", lambda x, y: x * np.sign(y - 1.0)),
    ("x * nvl(y, 1.0)", "x", lambda x, y: y),
    ("x * nvl2(y, y * y, 2.0)", "x", lambda x, y: y * y),
    ("x * log2(y)", "x", lambda x, y: np.log2(y)),
    ("x * log(3.0, y)", "x", lambda x, y: np.log(y) / np.log(3.0)),
    ("log(y, x * x + 1.0)", "y", lambda x, y: -np.log(x * x + 1.0) / (y * np.log(y) ** 2)),
    ("x * cot(y)", "x", lambda x, y: 1.0 / np.tan(y)),
    ("cot(y) * cot(y)", "y", lambda x, y: -2.0 / np.tan(y) / np.sin(y) ** 2),
    ("sin(cbrt(x))", "x", lambda x, y: np.cos(np.cbrt(x)) / (3.0 * np.cbrt(x) ** 2)),
    ("x * greatest(y - 1.0, 0.5, 1.0 - y)", "x", lambda x, y: np.maximum.reduce([y - 1.0, 0.5 + 0 * y, 1.0 - y])),
    ("x * least(y, 0.5)", "x", lambda x, y: np.minimum(y, 0.5)),
    ("x * (y % 0.7)", "x", lambda x, y: np.fmod(y, 0.7)),
    ("x * (7 / 2)", "x", lambda x, y: 3.0 + 0 * x),
    ("x * floor(7) / 2", "x", lambda x, y: 3.5 + 0 * x),
    ("x * CAST(y * 10 AS INT)", "x", lambda x, y: np.trunc(y * 10)),
    ("x * CAST(-y * 10 AS BIGINT)", "x", lambda x, y: np.trunc(-y * 10)),
    ("x * TRY_CAST(y AS DOUBLE)", "x", lambda x, y: y),
    ("x * round(y * 3.0)", "x", lambda x, y: np.sign(y) * np.floor(np.abs(y * 3.0) + 0.5)),
    ("x * degrees(atan2(y, 0.5))", "x", lambda x, y: np.degrees(np.arctan2(y, 0.5))),
    ("exp(-(-x)) * y", "x", lambda x, y: np.exp(x) * y),
    ("x * 1e200 * 1e200", "x", lambda x, y: np.inf + 0 * x),
    ("x * -1e200 * 1e200", "x", lambda x, y: -np.inf + 0 * x),
]

# What an engine has no spelling for, and the error that says so.
UNSPELLED = {
    ("postgresql", "x * (y % 0.7)"): "postgresql has no spelling for '%' of non-integer operands",
}


@pytest.mark.parametrize("expr, wrt, reference", SPELLED, ids=[e for e, _, _ in SPELLED])
def test_spellings_compute_the_derivative(engine: Engine, expr: str, wrt: str, reference: Callable) -> None:
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(-2.0, 2.0, 16), rng.uniform(0.2, 2.0, 16)
    missing = UNSPELLED.get((engine.dialect, expr))
    if missing is not None:
        with pytest.raises(AutogradError, match=missing):
            differentiate(expr, wrt, engine.dialect)
        return
    sql = differentiate(expr, wrt, engine.dialect)
    got = engine.evaluate(sql, xs.tolist(), ys.tolist())
    np.testing.assert_allclose(got, reference(xs, ys), rtol=1e-9, atol=1e-9, err_msg=f"{engine}: {sql}")


@pytest.mark.parametrize(
    "expr, dialect, message",
    [
        ("x * trunc(y, 1)", "sqlite", "sqlite has no spelling for 'trunc' with 2 arguments"),
        ("x * TRY_CAST(y AS INT)", "postgresql", "postgresql has no spelling for TRY_CAST to Int32"),
        ("x * CAST('NaN' AS DOUBLE)", "sqlite", "sqlite has no spelling for NaN"),
        ("x * nanvl(y, 1.0)", "duckdb", "duckdb has no spelling for 'nanvl'"),
    ],
)
def test_what_an_engine_lacks_is_named(expr: str, dialect: Dialect, message: str) -> None:
    with pytest.raises(AutogradError, match=message):
        differentiate(expr, "x", dialect)


def test_an_unknown_dialect_names_the_choices() -> None:
    with pytest.raises(
        AutogradError,
        match="unknown SQL dialect 'mysql'; expected one of datafusion, duckdb, postgresql, sqlite",
    ):
        differentiate("x * x", "x", "mysql")  # type: ignore[arg-type]


def test_the_dialect_type_lists_the_rust_dialects() -> None:
    assert typing.get_args(Dialect) == DIALECTS
