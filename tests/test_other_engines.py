"""Whole-query gradients run in DuckDB, SQLite and PostgreSQL.

``ag.gradient(con, loss, "w.w")`` on each engine's connection, against
central differences of the same loss run in the same engine (the parameter
moved row by row with ``UPDATE``), and no table of the gradient's left behind.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any, Callable, Iterator

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pytest

import datafusion_autograd as ag

ENGINES = ("duckdb", "sqlite", "postgresql")
_SCHEMAS = itertools.count()


class Engine:
    """One engine's connection, with what the tests need to write to it."""

    def __init__(self, name: str, con: Any, placeholder: str, double: str) -> None:
        self.name, self.con, self.placeholder, self.double = name, con, placeholder, double

    def execute(self, sql: str, params: "list[Any] | None" = None) -> None:
        self.con.execute(sql.replace("?", self.placeholder), params or [])

    def scalar(self, sql: str) -> Any:
        return self.con.execute(sql).fetchone()[0]

    def table(self, name: str, columns: "dict[str, str]", rows: "list[tuple[Any, ...]]") -> None:
        types = {"int": "INTEGER", "double": self.double}
        self.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {types[t]}' for c, t in columns.items())})")
        marks = ", ".join("?" for _ in columns)
        for row in rows:
            self.execute(f"INSERT INTO {name} VALUES ({marks})", list(row))

    def leftovers(self) -> int:
        """How many temporary tables the connection has."""
        if self.name == "duckdb":
            return self.scalar("SELECT count(*) FROM duckdb_tables() WHERE temporary")
        if self.name == "sqlite":
            return self.scalar("SELECT count(*) FROM sqlite_temp_master WHERE type = 'table'")
        return self.scalar("SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relkind = 'r'")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A fresh database in each engine: DuckDB and SQLite in memory, and a
    schema of its own on the PostgreSQL server the session started."""
    if request.param == "duckdb":
        con = duckdb.connect()
        yield Engine("duckdb", con, "?", "DOUBLE")
        con.close()
    elif request.param == "sqlite":
        con = sqlite3.connect(":memory:", isolation_level=None)
        yield Engine("sqlite", con, "?", "REAL")
        con.close()
    else:
        con: psycopg.Connection = request.getfixturevalue("postgresql")
        schema = f"ag_test{next(_SCHEMAS)}"
        con.execute(f"CREATE SCHEMA {schema}")
        con.execute(f"SET search_path TO {schema}")
        try:
            yield Engine("postgresql", con, "%s", "DOUBLE PRECISION")
        finally:
            con.execute(f"DROP SCHEMA {schema} CASCADE")
            con.execute("SET search_path TO public")


def parameters(engine: Engine, with_null: bool = False) -> np.ndarray:
    """``w(i, g, w)``: seven weights in two groups (distinct values, so no
    MIN/MAX ties), ``x(s, i, v)`` and ``y(s, t)``: five samples of a linear
    model over them."""
    rng = np.random.default_rng(7)
    w = np.round(rng.normal(size=7), 3) + np.arange(7) * 0.01
    rows = [(i, i % 2, float(w[i])) for i in range(7)]
    if with_null:
        rows[3] = (3, 1, None)
    engine.table("w", {"i": "int", "g": "int", "w": "double"}, rows)
    x = rng.normal(size=(5, 7))
    engine.table("x", {"s": "int", "i": "int", "v": "double"},
                 [(s, i, float(x[s, i])) for s in range(5) for i in range(7)])
    engine.table("y", {"s": "int", "t": "double"}, [(s, float(v)) for s, v in enumerate(rng.normal(size=5))])
    return w


def central_differences(engine: Engine, loss: str, h: float = 1e-5) -> np.ndarray:
    """∂loss/∂w at every row of ``w`` by central differences, the loss run in the engine."""
    rows = engine.con.execute("SELECT i, w FROM w ORDER BY i").fetchall()
    grads = []
    for i, value in rows:
        if value is None:  # NULL + h is NULL: the loss does not move
            grads.append(0.0)
            continue
        values = []
        for moved in (value + h, value - h):
            engine.execute("UPDATE w SET w = ? WHERE i = ?", [moved, i])
            values.append(float(engine.scalar(loss)))
        engine.execute("UPDATE w SET w = ? WHERE i = ?", [value, i])
        grads.append((values[0] - values[1]) / (2 * h))
    return np.array(grads)


def gradient_by_row(engine: Engine, loss: str) -> pa.Table:
    before = engine.leftovers()
    result = ag.gradient(engine.con, loss, "w.w")
    assert engine.leftovers() == before, "a table of the gradient's was left behind"
    return result


LOSSES = {
    "least squares, join and GROUP BY SUM, AVG": (
        "SELECT AVG(power(p.z - y.t, 2)) FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i "
        "GROUP BY x.s) p JOIN y ON p.s = y.s"
    ),
    "GROUP BY with each aggregate": (
        "SELECT SUM(m) FROM (SELECT g, MAX(w) * 2.0 + MIN(w * w) + AVG(w * w) * COUNT(w) + SUM(exp(w)) AS m "
        "FROM w GROUP BY g) a"
    ),
    "aggregates without GROUP BY": "SELECT MAX(w) - MIN(w) + AVG(w) * SUM(w * w) + COUNT(*) FROM w",
    "softmax over whole partitions": (
        "SELECT SUM(p * p * i) FROM (SELECT i, exp(w) / SUM(exp(w)) OVER (PARTITION BY g) AS p FROM w) s"
    ),
    "log-softmax over whole partitions": (
        "SELECT SUM(ls * i) FROM (SELECT i, w - ln(SUM(exp(w)) OVER (PARTITION BY g)) AS ls FROM w) s"
    ),
    "window AVG, MIN, MAX, COUNT": (
        "SELECT SUM(a) FROM (SELECT w * AVG(w) OVER (PARTITION BY g) + MAX(w) OVER (PARTITION BY g) "
        "- MIN(w * w) OVER () + COUNT(w) OVER (PARTITION BY g) * w AS a FROM w) s"
    ),
    "UNION ALL": "SELECT SUM(v * v * v) FROM (SELECT w AS v FROM w WHERE g = 0 UNION ALL SELECT 2.0 * w AS v FROM w) u",
    "scalar subquery": "SELECT SUM(w * (SELECT SUM(w * w) FROM w)) + (SELECT MAX(w) FROM w) FROM w",
    "CTE": "WITH s AS (SELECT g, SUM(w * w) AS q FROM w GROUP BY g) SELECT SUM(sqrt(q) * (g + 1)) FROM s",
    "outer join padded with NULLs": (
        "SELECT SUM(coalesce(b.v, 1.0) * w.w) FROM w LEFT JOIN (SELECT i, w * w AS v FROM w WHERE g = 1) b "
        "ON w.i = b.i"
    ),
    "filter, IN and CASE": (
        "SELECT SUM(CASE WHEN w > 0 THEN w * w ELSE sin(w) END) FROM w WHERE i IN (SELECT i FROM x WHERE s = 0)"
    ),
}


@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_gradient_matches_finite_differences_in_the_engine(engine: Engine, loss: str) -> None:
    parameters(engine)
    result = gradient_by_row(engine, loss).sort_by("i")
    assert result.column_names == ["i", "g", "w", "grad"]
    assert result.num_rows == 7
    np.testing.assert_allclose(result["grad"].to_numpy(), central_differences(engine, loss), rtol=1e-4, atol=1e-6)


def test_a_view_is_read_as_its_query(engine: Engine) -> None:
    parameters(engine)
    engine.execute("CREATE VIEW tripled AS SELECT i, g, w * 3.0 AS w3 FROM w")
    loss = "SELECT SUM(w3 * w3 * i) FROM tripled"
    result = gradient_by_row(engine, loss).sort_by("i")
    np.testing.assert_allclose(result["grad"].to_numpy(), central_differences(engine, loss), rtol=1e-4, atol=1e-6)


def test_a_null_parameter_gets_nothing(engine: Engine) -> None:
    parameters(engine, with_null=True)
    loss = "SELECT SUM(w * w) + AVG(w) + MAX(w) FROM w"
    result = gradient_by_row(engine, loss).sort_by("i")
    assert result["w"].to_pylist()[3] is None
    np.testing.assert_allclose(result["grad"].to_numpy(), central_differences(engine, loss), rtol=1e-4, atol=1e-6)


def test_what_an_engine_cannot_express_is_named() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE w (i INTEGER, w DOUBLE)")
    with pytest.raises(ag.AutogradError, match="duckdb has no spelling for the aggregate function 'stddev'"):
        ag.gradient(con, "SELECT SUM(w) + stddev(i) FROM w", "w.w")
    with pytest.raises(ag.UnsupportedOperation, match="LIMIT"):
        ag.gradient(con, "SELECT SUM(w) FROM (SELECT w FROM w LIMIT 2) l", "w.w")
    with pytest.raises(ag.UnknownParameter, match="table 'nope' not found"):
        ag.gradient(con, "SELECT SUM(w) FROM w", "nope.w")


def test_real_remainder_is_refused_in_postgresql(postgresql: psycopg.Connection) -> None:
    postgresql.execute("CREATE TEMPORARY TABLE w (i INTEGER, w DOUBLE PRECISION)")
    try:
        with pytest.raises(ag.AutogradError, match="postgresql has no spelling for '%' of non-integer operands"):
            ag.gradient(postgresql, "SELECT SUM(w % 0.5 + w) FROM w", "w.w")
    finally:
        postgresql.execute("DROP TABLE w")


FAILING = {
    # A statement that fails in the engine once some stages exist.
    "duckdb": "SELECT SUM(w) + SUM(i * 4611686018427387904) FROM w",
    "postgresql": "SELECT SUM(w * ln(w - w)) FROM w",
    "sqlite": "SELECT SUM(w) + SUM(i + 9223372036854775000) FROM w",
}


def test_nothing_is_left_when_the_engine_fails(engine: Engine) -> None:
    parameters(engine)
    before = engine.leftovers()
    with pytest.raises(Exception) as raised:
        ag.gradient(engine.con, FAILING[engine.name], "w.w")
    assert not isinstance(raised.value, ag.AutogradError), "the engine, not the planner, fails"
    assert engine.leftovers() == before
    # The connection is still usable.
    assert float(engine.scalar("SELECT SUM(w) FROM w")) != 0.0


TWO_LAYERS = """
SELECT AVG(power(o.z - y.t, 2)) FROM (
    SELECT h.s, SUM(h.a * w2.w) AS z
    FROM (SELECT x.s, w1.j, tanh(SUM(x.v * w1.w)) AS a FROM x JOIN w1 ON x.k = w1.k GROUP BY x.s, w1.j) h
    JOIN w2 ON h.j = w2.j
    GROUP BY h.s
) o JOIN y ON o.s = y.s
"""


def test_a_two_layer_network_in_duckdb_matches_numpy() -> None:
    rng = np.random.default_rng(11)
    n, d, hidden = 40, 5, 6
    x, w1, w2, t = rng.normal(size=(n, d)), rng.normal(size=(d, hidden)), rng.normal(size=hidden), rng.normal(size=n)
    con = duckdb.connect()
    frames = {
        "x": pa.table({"s": np.repeat(np.arange(n), d), "k": np.tile(np.arange(d), n), "v": x.ravel()}),
        "w1": pa.table({"k": np.repeat(np.arange(d), hidden), "j": np.tile(np.arange(hidden), d), "w": w1.ravel()}),
        "w2": pa.table({"j": np.arange(hidden), "w": w2}),
        "y": pa.table({"s": np.arange(n), "t": t}),
    }
    for name, frame in frames.items():
        con.register(f"{name}_rows", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_rows")
        con.unregister(f"{name}_rows")
    # numpy's backward pass of the same network.
    h = np.tanh(x @ w1)
    dz = 2 * (h @ w2 - t) / n
    d_w2 = h.T @ dz
    d_w1 = x.T @ (np.outer(dz, w2) * (1 - h**2))

    g1 = ag.gradient(con, TWO_LAYERS, "w1.w").sort_by([("k", "ascending"), ("j", "ascending")])
    g2 = ag.gradient(con, TWO_LAYERS, "w2.w").sort_by("j")
    np.testing.assert_allclose(g1["grad"].to_numpy(), d_w1.ravel(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g2["grad"].to_numpy(), d_w2, rtol=1e-9, atol=1e-12)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0


def test_the_readme_example_prints_what_it_shows() -> None:
    from pathlib import Path
    import contextlib
    import io
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Other engines", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    shown = "\n".join(line[2:] for line in example.splitlines() if line.startswith("# ")) + "\n"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {})
    assert out.getvalue() == shown


def test_the_command_line_prints_statements_the_engine_runs() -> None:
    import subprocess
    import sys

    loss = LOSSES["softmax over whole partitions"]
    run = subprocess.run(
        [sys.executable, "-m", "datafusion_autograd", "gradient", loss, "w.w", "--dialect", "duckdb",
         "--table", "w=i:int32,g:int32,w:double"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    statements = [s for s in run.stdout.split(";\n") if s.strip()]
    engine = Engine("duckdb", duckdb.connect(), "?", "DOUBLE")
    parameters(engine)
    setup = [s for s in statements if s.startswith("CREATE TEMPORARY TABLE")]
    drops = [s for s in statements if s.startswith("DROP TABLE IF EXISTS")]
    assert statements == [*setup, statements[len(setup)], *drops] and len(drops) == len(setup)
    for statement in setup:
        engine.execute(statement)
    rows = sorted(engine.con.execute(statements[len(setup)]).fetchall())
    for statement in drops:
        engine.execute(statement)
    assert engine.leftovers() == 0
    np.testing.assert_allclose([r[-1] for r in rows], central_differences(engine, loss), rtol=1e-4, atol=1e-6)


def test_the_command_line_names_what_it_cannot_write() -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "datafusion_autograd", "gradient", "SELECT SUM(w % 0.5) FROM w", "w.w",
         "--dialect", "postgresql", "--table", "w=i:int64,w:double"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1
    assert "postgresql has no spelling for '%' of non-integer operands" in run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "datafusion_autograd", "gradient", "SELECT 1", "w.w", "--dialect", "duckdb",
         "--table", "w=i:int65"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "No type alias for int65" in bad.stderr
