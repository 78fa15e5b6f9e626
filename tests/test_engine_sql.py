"""``ag.sql(con, statement)`` in DuckDB, SQLite and PostgreSQL.

Markers per row, ``gradient(…)`` table calls and the whole-query form
``grad((SELECT …), w)``, run in each engine (the ``engine`` fixture of
``test_other_engines`` gives every test all three), against closed forms
computed with numpy, and no temporary table of theirs left behind.
"""

from __future__ import annotations

from typing import Any, Optional

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pytest

import datafusion_autograd as ag
from test_other_engines import Engine, engine, parameters  # noqa: F401  (engine is a fixture)

LEAST_SQUARES = (
    "SELECT AVG(power(p.z - y.t, 2)) FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i "
    "GROUP BY x.s) p JOIN y ON p.s = y.s"
)


def run(engine: Engine, statement: str) -> Optional[pa.Table]:
    before = engine.leftovers()
    result = ag.sql(engine.con, statement)
    assert engine.leftovers() == before, "a table of the statement's gradients was left behind"
    return result


def data(engine: Engine) -> "dict[str, np.ndarray]":
    """The tables of ``parameters`` read back as numpy: ``w`` by ``i``,
    ``X[s, i]`` and ``t`` by ``s``, ``g`` the group of each weight."""
    w = parameters(engine)
    rows = engine.con.execute("SELECT s, i, v FROM x").fetchall()
    x = np.zeros((5, 7))
    for s, i, v in rows:
        x[s, i] = v
    t = np.array([v for _, v in sorted(engine.con.execute("SELECT s, t FROM y").fetchall())])
    return {"w": w, "x": x, "t": t, "g": np.arange(7) % 2, "i": np.arange(7.0)}


def least_squares_gradient(d: "dict[str, np.ndarray]") -> np.ndarray:
    """∂/∂w of mean((Xw − t)²), by hand."""
    return 2.0 * d["x"].T @ (d["x"] @ d["w"] - d["t"]) / len(d["t"])


def floats(table: pa.Table, name: str) -> np.ndarray:
    return np.array(table[name].to_pylist(), dtype=float)


def test_a_marker_per_row(engine: Engine) -> None:
    d = data(engine)
    result = run(
        engine,
        "SELECT i, grad(sin(w) * w * w, w) AS d, jvp(exp(w * 2.0), w, 3.0) AS j, vjp(w * w * i, w, g + 1) AS v, "
        "grad(grad(w * w * w, w), w) AS h FROM w ORDER BY i",
    )
    assert result is not None and result.column_names == ["i", "d", "j", "v", "h"]
    w, i, g = d["w"], d["i"], d["g"]
    np.testing.assert_allclose(floats(result, "d"), np.cos(w) * w**2 + 2 * w * np.sin(w), rtol=1e-12)
    np.testing.assert_allclose(floats(result, "j"), 3.0 * 2.0 * np.exp(2 * w), rtol=1e-12)
    np.testing.assert_allclose(floats(result, "v"), (g + 1) * 2 * w * i, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(floats(result, "h"), 6 * w, rtol=1e-12)


def test_a_statement_without_rows_gives_none(engine: Engine) -> None:
    d = data(engine)
    assert run(engine, "CREATE TABLE dw AS SELECT i, grad(w * w * w, w) AS d FROM w") is None
    assert run(engine, "INSERT INTO dw SELECT i + 100, grad(exp(w), w) FROM w") is None
    assert run(engine, "CREATE TABLE gw AS SELECT i, grad FROM gradient('" + LEAST_SQUARES + "', 'w.w')") is None
    rows = sorted(engine.con.execute("SELECT i, d FROM dw").fetchall())
    np.testing.assert_allclose([v for _, v in rows], np.concatenate([3 * d["w"] ** 2, np.exp(d["w"])]), rtol=1e-12)
    assert [i for i, _ in rows] == [*range(7), *range(100, 107)]
    kept = sorted(engine.con.execute("SELECT i, grad FROM gw").fetchall())
    np.testing.assert_allclose([v for _, v in kept], least_squares_gradient(d), rtol=1e-9)


def test_a_gradient_call_joined_with_other_tables(engine: Engine) -> None:
    d = data(engine)
    result = run(
        engine,
        "SELECT gr.i, gr.grad * x.v AS scaled, gr.w FROM gradient('" + LEAST_SQUARES + "', 'w.w') AS gr "
        "JOIN x ON x.i = gr.i WHERE x.s = 2 ORDER BY gr.i",
    )
    assert result is not None and result.column_names == ["i", "scaled", "w"]
    np.testing.assert_allclose(floats(result, "scaled"), least_squares_gradient(d) * d["x"][2], rtol=1e-9)
    np.testing.assert_allclose(floats(result, "w"), d["w"])
    # Unaliased, it is read as `gradient`; two calls in one statement.
    both = run(
        engine,
        "SELECT gradient.i, gradient.grad + b.grad AS total FROM gradient('SELECT SUM(w * w * w) FROM w', 'w.w') "
        "JOIN gradient('SELECT MAX(w) FROM w', 'w.w') AS b ON gradient.i = b.i ORDER BY gradient.i",
    )
    assert both is not None
    indicator = (d["w"] == d["w"].max()).astype(float)
    np.testing.assert_allclose(floats(both, "total"), 3 * d["w"] ** 2 + indicator, rtol=1e-12)


def test_a_marker_over_a_whole_query(engine: Engine) -> None:
    d = data(engine)
    result = run(
        engine, f"SELECT i, w, grad(({LEAST_SQUARES}), w) AS g, 2.0 * grad(({LEAST_SQUARES}), w) AS g2 FROM w ORDER BY i"
    )
    assert result is not None and result.column_names == ["i", "w", "g", "g2"]
    np.testing.assert_allclose(floats(result, "g"), least_squares_gradient(d), rtol=1e-9)
    np.testing.assert_allclose(floats(result, "g2"), 2 * least_squares_gradient(d), rtol=1e-9)


def test_a_whole_query_marker_reads_the_statements_ctes(engine: Engine) -> None:
    d = data(engine)
    result = run(
        engine,
        "WITH s AS (SELECT g, SUM(w * w) AS q FROM w GROUP BY g) "
        "SELECT w.i, grad((SELECT SUM(sqrt(q) * (g + 1)) FROM s), w) AS d FROM w ORDER BY w.i",
    )
    assert result is not None
    w, g = d["w"], d["g"]
    q = np.array([np.sum(w[g == k] ** 2) for k in (0, 1)])
    np.testing.assert_allclose(floats(result, "d"), (g + 1) * w / np.sqrt(q[g]), rtol=1e-9)


def test_what_an_engine_cannot_express_is_named(engine: Engine) -> None:
    parameters(engine)
    if engine.name == "postgresql":
        with pytest.raises(ag.AutogradError, match="postgresql has no spelling for '%'"):
            ag.sql(engine.con, "SELECT grad(w % 0.5 * w, w) FROM w")
    with pytest.raises(ag.AutogradError, match=f"{engine.name} has no spelling for the aggregate function 'stddev'"):
        ag.sql(engine.con, "SELECT * FROM gradient('SELECT SUM(w) + stddev(i) FROM w', 'w.w')")
    with pytest.raises(ag.AutogradError, match="takes two string literals"):
        ag.sql(engine.con, "SELECT * FROM gradient('SELECT SUM(w) FROM w')")
    with pytest.raises(ag.UnknownParameter, match="table 'nope' not found"):
        ag.sql(engine.con, "SELECT * FROM gradient('SELECT SUM(w) FROM w', 'nope.w')")
    assert engine.leftovers() == 0


def test_a_view_cannot_keep_a_gradient(engine: Engine) -> None:
    d = data(engine)
    with pytest.raises(ag.AutogradError, match=f"a view cannot keep a gradient in {engine.name}"):
        ag.sql(engine.con, "CREATE VIEW gv AS SELECT i, grad FROM gradient('SELECT SUM(w * w) FROM w', 'w.w')")
    assert engine.leftovers() == 0
    # A view of per-row derivatives keeps its query, and reads it when it is read.
    assert run(engine, "CREATE VIEW dv AS SELECT i, grad(w * w, w) AS d FROM w") is None
    rows = sorted(engine.con.execute("SELECT i, d FROM dv").fetchall())
    np.testing.assert_allclose([v for _, v in rows], 2 * d["w"], rtol=1e-12)


def test_nothing_is_left_when_the_statement_fails(engine: Engine) -> None:
    parameters(engine)
    before = engine.leftovers()
    with pytest.raises(Exception) as raised:
        ag.sql(engine.con, "SELECT grad, no_such_column FROM gradient('SELECT SUM(w * w) FROM w', 'w.w')")
    assert not isinstance(raised.value, ag.AutogradError), "the engine, not the planner, fails"
    assert engine.leftovers() == before
    assert float(engine.scalar("SELECT SUM(w) FROM w")) != 0.0  # the connection is still usable


def test_a_connection_of_no_known_engine_is_refused() -> None:
    with pytest.raises(TypeError, match="expected a DataFusion SessionContext, a duckdb, sqlite3 or psycopg 3"):
        ag.sql(object(), "SELECT 1")


def test_a_statement_without_markers_runs_as_written() -> None:
    con: Any = duckdb.connect()
    assert ag.sql(con, "SELECT 'grad(x, x)' AS s -- grad(y, y)").to_pydict() == {"s": ["grad(x, x)"]}


def test_postgresql_results_are_typed_by_the_server(postgresql: psycopg.Connection) -> None:
    result = ag.sql(postgresql, "SELECT 1::integer AS a, 2.5::float8 AS b, grad(x * x, x) AS d FROM (SELECT 1.5::float8 AS x WHERE false) t")
    assert result is not None and result.num_rows == 0
    assert result.schema == pa.schema([("a", pa.int32()), ("b", pa.float64()), ("d", pa.float64())])
