"""Random loss queries: the gradient DuckDB and SQLite compute equals DataFusion's.

Each case draws tables (NULLs, tied keys, duplicate rows) and a loss query
over joins, ``GROUP BY``, windows, ``UNION ALL``, CTEs, views, scalar and
``IN`` subqueries and ``VALUES``; ``ag.gradient`` is then taken in a DataFusion
``SessionContext`` and in each engine on the same rows, and every row's
``grad`` must agree to 1e-9 relative. So every statement the engine writer
emits is checked to compute what the plan it stands for computes.

``AUTOGRAD_FUZZ_ENGINE_LOSSES`` sets how many cases (default 40; ``dev.sh
fuzz`` runs more), ``AUTOGRAD_FUZZ_SEED`` the first seed.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
from typing import Any, Optional

import duckdb
import pyarrow as pa
import pytest
from datafusion import SessionContext

import datafusion_autograd as ag

CASES = int(os.environ.get("AUTOGRAD_FUZZ_ENGINE_LOSSES", "40"))
FIRST_SEED = int(os.environ.get("AUTOGRAD_FUZZ_SEED", "0"), 0)

Row = "tuple[Optional[float], ...]"


def draw_tables(rng: random.Random) -> "dict[str, list[tuple[Any, ...]]]":
    """``w(i, w)`` with tied keys and sometimes a row twice, ``x(s, i, v)``, ``y(s, t)``."""

    def value(null_odds: int) -> Optional[float]:
        if rng.randrange(null_odds) == 0:
            return None
        return round(rng.uniform(-1.5, 1.5) * 64) / 64 + rng.uniform(-0.01, 0.01)

    w = [(i, value(12)) for i in range(4)]
    if rng.randrange(2) == 0:
        w[3] = (w[2][0], w[3][1])
    if rng.randrange(3) == 0:
        w.append(w[1])
    x = [(s, rng.randrange(4), value(6)) for s in range(3) for _ in range(3)]
    y = [(s % 3, value(6)) for s in range(4)]
    return {"w": w, "x": x, "y": y}


COLUMNS = {"w": ("i", "w"), "x": ("s", "i", "v"), "y": ("s", "t")}


class Losses:
    """Draws loss queries; every relation it writes has the columns ``k, a, b``
    and is written in SQL DataFusion, DuckDB and SQLite all read alike."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names = 0
        self.views: "list[tuple[str, str]]" = []

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def base(self) -> str:
        return self.rng.choice(
            [
                "SELECT i AS k, w AS a, w * 0.5 + 1.0 AS b FROM w",
                "SELECT x.s AS k, x.v * w.w AS a, w.w - x.v AS b FROM x JOIN w ON x.i = w.i",
                "SELECT s AS k, t AS a, t * t AS b FROM y",
                "SELECT column1 AS k, column2 AS a, column3 AS b "
                "FROM (VALUES (0, 1.5, NULL), (1, -0.5, 2.0), (1, 0.25, 0.5)) AS v",
            ]
        )

    def expr(self, q: str) -> str:
        a, b = f"{q}.a", f"{q}.b"
        return self.rng.choice(
            [
                f"{a} * {b}",
                f"{a} + 0.5 * {b}",
                f"sin({a}) + {b}",
                f"exp({a} / 4.0) * 0.5",
                f"{a} * {a} - {b}",
                f"coalesce({a}, 0.3) * 2.0",
                f"CASE WHEN {b} IS NULL THEN {a} ELSE {a} * {b} END",
                f"tanh({b}) - {a}",
                f"power({a}, 2) + sqrt(abs({b}) + 1.0)",
                a,
            ]
        )

    def relation(self, depth: int) -> str:
        if depth == 0:
            return self.base()
        q = self.name("q")
        kind = self.rng.randrange(11)
        if kind == 0:
            inner = self.relation(depth - 1)
            return f"SELECT {q}.k, {self.expr(q)} AS a, {self.expr(q)} AS b FROM ({inner}) {q}"
        if kind == 1:
            inner = self.relation(depth - 1)
            predicate = self.rng.choice(
                [f"{q}.a > -0.5", f"{q}.b IS NULL OR {q}.b < 1.0", f"{q}.k % 2 = 0", f"{q}.k IN (SELECT i FROM w WHERE w > 0)"]
            )
            return f"SELECT {q}.k, {q}.a, {q}.b FROM ({inner}) {q} WHERE {predicate}"
        if kind in (2, 3):
            left, right = self.relation(depth - 1), self.relation(depth - 1)
            l, r = self.name("l"), self.name("r")
            return self.rng.choice(
                [
                    f"SELECT {l}.k, {l}.a * {r}.b AS a, {l}.b + {r}.a AS b FROM ({left}) {l} JOIN ({right}) {r} ON {l}.k = {r}.k",
                    f"SELECT {l}.k, {l}.a * coalesce({r}.b, 1.0) AS a, {r}.a AS b "
                    f"FROM ({left}) {l} LEFT JOIN ({right}) {r} ON {l}.k = {r}.k",
                    f"SELECT {l}.k, {l}.a - {r}.a AS a, {l}.b * {r}.b AS b FROM ({left}) {l} CROSS JOIN ({right}) {r}",
                ]
            )
        if kind in (4, 5):
            inner = self.relation(depth - 1)
            fa = self.rng.choice(["SUM", "AVG", "MIN", "MAX"])
            b = self.rng.choice([f"{f}({q}.b)" for f in ("SUM", "AVG", "MIN", "MAX")] + [f"COUNT({q}.b) * 1.0"])
            return f"SELECT {q}.k, {fa}({q}.a) AS a, {b} AS b FROM ({inner}) {q} GROUP BY {q}.k"
        if kind == 6:
            inner = self.relation(depth - 1)
            fa = self.rng.choice(["SUM", "AVG", "MIN", "MAX"])
            fb = self.rng.choice(["SUM", "AVG", "MAX", "COUNT"])
            b = self.rng.choice(
                [f"{fb}({q}.b) OVER () * 1.0", f"exp({q}.b) / SUM(exp({q}.b)) OVER (PARTITION BY {q}.k)"]
            )
            return f"SELECT {q}.k, {q}.a - {fa}({q}.a) OVER (PARTITION BY {q}.k) AS a, {b} AS b FROM ({inner}) {q}"
        if kind == 7:
            left, right = self.relation(depth - 1), self.relation(depth - 1)
            u1, u2 = self.name("u"), self.name("u")
            return (
                f"SELECT {u1}.k, {u1}.a, {u1}.b FROM ({left}) {u1} "
                f"UNION ALL SELECT {u2}.k, {u2}.a, {u2}.b FROM ({right}) {u2}"
            )
        if kind == 8:
            inner = self.relation(depth - 1)
            c = self.name("c")
            if self.rng.randrange(2) == 0:
                return f"WITH {c} AS ({inner}) SELECT k, a, b FROM {c}"
            return f"WITH {c} AS ({inner}) SELECT c1.k, c1.a * c2.b AS a, c1.b AS b FROM {c} c1 JOIN {c} c2 ON c1.k = c2.k"
        if kind == 9:
            inner = self.relation(depth - 1)
            if "VALUES" in inner:  # DataFusion's catalog cannot read a view over VALUES back as SQL
                return f"SELECT k, a, b FROM ({inner}) {q}"
            v = self.name("v")
            self.views.append((v, inner))
            return f"SELECT k, a, b FROM {v}"
        inner = self.relation(depth - 1)
        if self.rng.randrange(2) == 0:
            scalar = "(SELECT AVG(w) FROM w)"
        else:
            s = self.name("s")
            scalar = f"(SELECT SUM({s}.a) FROM ({self.relation(depth - 1)}) {s})"
        return f"SELECT {q}.k, {q}.a * {scalar} AS a, {q}.b FROM ({inner}) {q}"

    def loss(self) -> str:
        inner = self.relation(1 + self.rng.randrange(3))
        q = self.name("q")
        e = self.rng.choice([f"{q}.a", f"{q}.a * {q}.b", f"{q}.a + {q}.b", f"coalesce({q}.a, 0.0) * 0.5 + {q}.b"])
        f = self.rng.choice(["SUM", "SUM", "AVG", "MAX"])
        return f"SELECT {f}({e}) FROM ({inner}) {q}"


def datafusion_gradient(tables: "dict[str, list[tuple[Any, ...]]]", views: "list[tuple[str, str]]", loss: str) -> "list[Row]":
    ctx = SessionContext()
    for name, rows in tables.items():
        fields = [pa.field(c, pa.float64() if c in ("w", "v", "t") else pa.int64()) for c in COLUMNS[name]]
        columns = list(zip(*rows))
        schema = pa.schema(fields)
        ctx.register_record_batches(name, [[pa.record_batch([pa.array(c, f.type) for c, f in zip(columns, fields)], schema=schema)]])
    for name, query in views:
        ctx.sql(f"CREATE VIEW {name} AS {query}").collect()
    result = ag.gradient(ctx, loss, "w.w").to_arrow_table()
    return rows_of(result)


def engine_gradient(con: Any, tables: "dict[str, list[tuple[Any, ...]]]", views: "list[tuple[str, str]]", loss: str) -> "list[Row]":
    for name, rows in tables.items():
        types = ", ".join(f"{c} {'DOUBLE' if c in ('w', 'v', 't') else 'BIGINT'}" for c in COLUMNS[name])
        con.execute(f"CREATE TABLE {name} ({types})")
        marks = ", ".join("?" for _ in COLUMNS[name])
        con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
    for name, query in views:
        con.execute(f"CREATE VIEW {name} AS {query}")
    return rows_of(ag.gradient(con, loss, "w.w"))


def rows_of(table: pa.Table) -> "list[Row]":
    """``(i, w, grad)`` of every row, in one order whatever the engine's."""
    rows = zip(table["i"].to_pylist(), table["w"].to_pylist(), table["grad"].to_pylist())
    return sorted(rows, key=lambda r: tuple((v is None, v or 0.0) for v in r))


def same(a: Optional[float], b: Optional[float]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def connect(name: str) -> Any:
    return duckdb.connect() if name == "duckdb" else sqlite3.connect(":memory:", isolation_level=None)


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + CASES))
def test_the_engines_gradient_is_datafusions(seed: int) -> None:
    rng = random.Random(seed)
    tables = draw_tables(rng)
    losses = Losses(rng)
    loss = losses.loss()
    rerun = f"rerun: AUTOGRAD_FUZZ_SEED={seed} AUTOGRAD_FUZZ_ENGINE_LOSSES=1\nloss: {loss}\nviews: {losses.views}"
    expected = datafusion_gradient(tables, losses.views, loss)
    for name in ("duckdb", "sqlite"):
        con = connect(name)
        try:
            got = engine_gradient(con, tables, losses.views, loss)
        except Exception as error:  # noqa: BLE001 (reported with the case)
            raise AssertionError(f"{name} failed: {error}\n{rerun}") from error
        finally:
            con.close()
        assert len(got) == len(expected), f"{name}: {len(got)} rows, DataFusion {len(expected)}\n{rerun}"
        for g, e in zip(got, expected):
            assert g[:2] == e[:2] and same(g[2], e[2]), f"{name}: row {g}, DataFusion {e}\n{rerun}"
