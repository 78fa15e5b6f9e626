"""Whole-query gradients in other engines: DuckDB, SQLite and PostgreSQL.

``gradient(con, loss, "<table>.<column>")`` plans ``loss`` over the
connection's own tables and views (their schemas read from the engine's
catalog), has the Rust engine write the staged gradient in the engine's
dialect — a temporary table per stage, the result query, the tables dropped —
runs it there and returns the rows as a ``pyarrow.Table``. This module only
reads catalogs and runs statements; the SQL is written in Rust
(``datafusion_autograd::gradient_statements``).

``sql(con, statement)`` runs a statement of the engine's own with
``grad``/``jvp``/``vjp`` markers, ``gradient('<loss>', '<table>.<column>')``
calls and markers over whole queries, ``grad((SELECT …), w)``: Rust writes
each derivative in the engine's dialect and each gradient into a temporary
table (``datafusion_autograd::engine_sql``), dropped after the statement.

>>> import duckdb
>>> con = duckdb.connect()
>>> _ = con.execute("CREATE TABLE w (i INTEGER, w DOUBLE)")
>>> _ = con.execute("INSERT INTO w VALUES (0, 1.5), (1, -2.0)")
>>> gradient(con, "SELECT SUM(w * w * w) FROM w", "w.w").sort_by("i").to_pydict()
{'i': [0, 1], 'w': [1.5, -2.0], 'grad': [6.75, 12.0]}
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Iterator, Optional, Union

import pyarrow as pa

from datafusion_autograd import _native

Relation = Union[pa.Schema, str]


def dialect_of(con: Any) -> Optional[str]:
    """The dialect of a DuckDB, SQLite or psycopg 3 connection, else None.

    >>> import sqlite3
    >>> dialect_of(sqlite3.connect(":memory:"))
    'sqlite'
    >>> dialect_of(object()) is None
    True
    """
    if isinstance(con, sqlite3.Connection):
        return "sqlite"
    module = type(con).__module__
    if module.startswith("duckdb") or module.startswith("_duckdb"):
        return "duckdb"
    if module.startswith("psycopg") and not module.startswith("psycopg2"):
        return "postgresql"
    return None


def gradient(con: Any, loss: str, wrt: str) -> pa.Table:
    """∂loss/∂(every row's ``wrt`` column), computed in the engine of ``con``.

    ``con`` is a ``duckdb.DuckDBPyConnection``, a ``sqlite3.Connection`` or a
    psycopg 3 ``Connection``; ``loss`` is a query in DataFusion's SQL over
    its tables and views that returns one row with one numeric column;
    ``wrt`` names the parameter as ``"<table>.<column>"``. The result has
    every row of the table, all its columns and a DOUBLE column ``grad``.
    Every table the gradient creates is dropped before this returns, also
    when a statement fails. What the engine cannot express (``%`` of reals in
    PostgreSQL, a function it lacks) is an ``AutogradError`` naming it.

    >>> import sqlite3
    >>> con = sqlite3.connect(":memory:")
    >>> _ = con.executescript("CREATE TABLE w (i INTEGER, w REAL); INSERT INTO w VALUES (0, 3.0), (1, 4.0);")
    >>> gradient(con, "SELECT SUM(w * w) FROM w", "w.w").sort_by("i").to_pydict()["grad"]
    [6.0, 8.0]
    """
    engine = _engine(con)
    setup, query, cleanup = _native.gradient_statements_for(loss, wrt, engine.dialect, engine.relation)
    table = wrt.rpartition(".")[0]
    schema = engine.relation(table)
    assert isinstance(schema, pa.Schema), f"{table} is a table"
    return engine.run(setup, query, cleanup, schema.append(pa.field("grad", pa.float64())))


def sql(con: Any, statement: str, *, max_derivative_nodes: Optional[int] = None) -> Optional[pa.Table]:
    """Runs ``statement`` in the engine of ``con``, its derivatives and gradients computed there.

    ``statement`` is one statement of the engine's own SQL (a query, ``CREATE
    TABLE … AS``, ``INSERT … SELECT``, …) that may hold ``grad(expr, col)``,
    ``jvp(expr, col, tangent)`` and ``vjp(expr, col, cotangent)`` per row,
    ``gradient('<loss query>', '<table>.<column>')`` as a table (every row of
    the table, its columns and ``grad``), and markers over whole queries such
    as ``grad((SELECT …), w)`` (the loss a scalar subquery, which may read the
    statement's CTEs) at each row of the table ``w`` is read from. Loss
    queries are DataFusion SQL over the engine's tables and views. The rows
    come back as a ``pyarrow.Table``, or ``None`` for a statement without
    rows. The gradients' temporary tables are dropped before this returns,
    also when a statement fails; what the engine cannot express is an
    ``AutogradError`` naming the operator or function and the engine.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> sql(con, "CREATE TABLE w AS SELECT * FROM (VALUES (0, 1.5), (1, -2.0)) AS v(i, w)") is None
    True
    >>> sql(con, "SELECT i, grad(w * w * w, w) AS d FROM w ORDER BY i").to_pydict()
    {'i': [0, 1], 'd': [6.75, 12.0]}
    >>> sql(con, "SELECT i, grad FROM gradient('SELECT SUM(w * w) FROM w', 'w.w') ORDER BY i").to_pydict()
    {'i': [0, 1], 'grad': [3.0, -4.0]}
    >>> sql(con, "SELECT i, grad((SELECT SUM(w * w) FROM w), w) AS g FROM w ORDER BY i").to_pydict()
    {'i': [0, 1], 'g': [3.0, -4.0]}
    """
    engine = _engine(con)
    setup, query, cleanup = _native.engine_statements_for(
        statement, engine.dialect, engine.relation, max_derivative_nodes
    )
    return engine.run(setup, query, cleanup, None)


def _engine(con: Any) -> "_Engine":
    dialect = dialect_of(con)
    if dialect == "duckdb":
        return _DuckDB(con)
    if dialect == "sqlite":
        return _SQLite(con)
    if dialect == "postgresql":
        return _PostgreSQL(con)
    raise TypeError(
        f"expected a DataFusion SessionContext, a duckdb, sqlite3 or psycopg 3 connection, got {type(con).__name__}"
    )


class _Engine:
    """One connection: its catalog, and how statements run on it."""

    dialect = ""

    def __init__(self, con: Any) -> None:
        self.con = con

    def relation(self, name: str) -> Optional[Relation]:
        """A table's schema or a view's query, by the name a query gives it."""
        raise NotImplementedError

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def rows(self, sql: str, schema: Optional[pa.Schema]) -> Optional[pa.Table]:
        """The rows of ``sql`` (typed by ``schema`` if given), or None for a statement without rows."""
        cursor = self.con.execute(sql)
        if cursor.description is None:
            return None
        rows = cursor.fetchall()
        columns = list(zip(*rows)) if rows else [[] for _ in cursor.description]
        if schema is not None:
            return pa.table([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)], schema=schema)
        types = [self.type_of(d) for d in cursor.description]
        arrays = [pa.array(list(c), type=t) for c, t in zip(columns, types)]
        return pa.table(arrays, names=[d[0] for d in cursor.description])

    def type_of(self, description: Any) -> Optional[pa.DataType]:
        """The Arrow type of a result column the cursor describes so, or None to infer it."""
        return None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield

    def run(
        self, setup: "list[str]", query: str, cleanup: "list[str]", schema: Optional[pa.Schema]
    ) -> Optional[pa.Table]:
        """Runs ``setup`` and ``query``, then ``cleanup`` whatever happened."""
        with self.session():
            try:
                for statement in setup:
                    self.execute(statement)
                return self.rows(query, schema)
            finally:
                self.clean(cleanup)

    def clean(self, cleanup: "list[str]") -> None:
        for statement in cleanup:
            self.execute(statement)


def _split(name: str) -> "list[str]":
    """A relation's name as DataFusion writes a table reference: dotted parts."""
    parts = name.split(".")
    if len(parts) == 3 and parts[:2] == ["datafusion", "public"]:
        return parts[2:]
    return parts


class _DuckDB(_Engine):
    dialect = "duckdb"

    def relation(self, name: str) -> Optional[Relation]:
        *schema, table = _split(name)
        where = "lower({0}_name) = lower(?)" + (" AND lower(schema_name) = lower(?)" if schema else "")
        params = [table, *schema[-1:]]
        views = self.con.execute(
            f"SELECT sql FROM duckdb_views() WHERE NOT internal AND {where.format('view')}", params
        ).fetchall()
        if views:
            return _native.view_query(views[0][0])
        tables = self.con.execute(
            f"SELECT database_name, schema_name, table_name FROM duckdb_tables() WHERE {where.format('table')}",
            params,
        ).fetchall()
        if not tables:
            return None
        quoted = ".".join('"' + part.replace('"', '""') + '"' for part in tables[0])
        return self.con.sql(f"SELECT * FROM {quoted} LIMIT 0").to_arrow_table().schema

    def rows(self, sql: str, schema: Optional[pa.Schema]) -> Optional[pa.Table]:
        import duckdb  # the connection's own module

        (statement,) = self.con.extract_statements(sql)
        returns_rows = statement.expected_result_type == [duckdb.ExpectedResultType.QUERY_RESULT]
        complete = getattr(self.con, "complete", None)
        if complete is not None:  # a result of the caller's execute() left unread would refuse the query
            complete()
        relation = self.con.sql(sql)  # runs a statement that is not a query now
        if relation is None:
            return None
        # What DuckDB gives for a statement without rows (unless it has RETURNING).
        if not returns_rows and relation.columns in (["Count"], ["Success"]):
            return None
        return relation.to_arrow_table()


def _sqlite_type(declared: str) -> pa.DataType:
    """An Arrow type for a column SQLite declares so, by SQLite's affinity rules."""
    declared = declared.upper()
    if "INT" in declared:
        return pa.int64()
    if any(text in declared for text in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in declared or not declared:
        return pa.binary()
    if "BOOL" in declared:
        return pa.bool_()
    return pa.float64()


class _SQLite(_Engine):
    dialect = "sqlite"

    def relation(self, name: str) -> Optional[Relation]:
        *schema, table = _split(name)
        found = None
        for catalog in schema[-1:] or ["temp", "main"]:
            master = "sqlite_temp_master" if catalog.lower() == "temp" else f'"{catalog}".sqlite_master'
            try:
                found = self.con.execute(
                    f"SELECT type, name, sql FROM {master} WHERE lower(name) = lower(?) AND type IN ('table', 'view')",
                    [table],
                ).fetchone()
            except sqlite3.OperationalError:
                return None
            if found:
                break
        if found is None:
            return None
        kind, stored, sql = found
        if kind == "view":
            return _native.view_query(sql)
        quoted = '"' + stored.replace('"', '""') + '"'
        columns = self.con.execute(f"PRAGMA table_info({quoted})").fetchall()
        return pa.schema([pa.field(c[1], _sqlite_type(c[2] or ""), nullable=not c[3]) for c in columns])


_POSTGRES_TYPES = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "numeric": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}


# Result columns by PostgreSQL's type name (NUMERIC is left to its Decimals).
_POSTGRES_RESULT_TYPES = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
}


class _PostgreSQL(_Engine):
    dialect = "postgresql"

    def relation(self, name: str) -> Optional[Relation]:
        parts = _split(name)
        cursor = self.con.cursor()
        cursor.execute(
            "SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass("
            + " || '.' || ".join(["quote_ident(%s)"] * len(parts))
            + ")",
            parts,
        )
        found = cursor.fetchone()
        if found is None:
            return None
        oid, kind = found
        if kind in ("v", "m"):
            cursor.execute("SELECT pg_get_viewdef(%s::oid)", [oid])
            return str(cursor.fetchone()[0]).strip().rstrip(";")
        cursor.execute(
            "SELECT attname, format_type(atttypid, NULL), attnotnull FROM pg_attribute "
            "WHERE attrelid = %s::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [oid],
        )
        return pa.schema(
            [pa.field(n, _POSTGRES_TYPES.get(t, pa.string()), nullable=not notnull) for n, t, notnull in cursor]
        )

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def type_of(self, description: Any) -> Optional[pa.DataType]:
        import psycopg  # the connection's own module

        info = psycopg.postgres.types.get(description.type_code)
        return _POSTGRES_RESULT_TYPES.get(info.name) if info is not None else None

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        # A savepoint (or a transaction): a failed statement rolls back what
        # the gradient created, and leaves the connection usable.
        with self.con.transaction():
            yield

    def run(
        self, setup: "list[str]", query: str, cleanup: "list[str]", schema: Optional[pa.Schema]
    ) -> Optional[pa.Table]:
        with self.session():
            for statement in setup:
                self.execute(statement)
            table = self.rows(query, schema)
            self.clean(cleanup)
        return table
