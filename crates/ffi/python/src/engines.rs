//! Whole-query gradients for other engines (DuckDB, PostgreSQL, SQLite): the
//! statements that compute them there, written in the Rust crate.

use datafusion_autograd::view_query as query_of_view;
use datafusion_autograd::{
    engine_sql, gradient_statements, AutogradOptions, Catalog, Dialect, EngineStatements,
};
use datafusion_common::Result;
use datafusion_common::TableReference;
use pyo3::prelude::*;

use crate::{engine, options, HostRelations};

/// The gradient of the loss query with respect to `wrt` ("table.column") as
/// statements for the engine `dialect`: `(setup, query, cleanup)`, run in
/// that order (cleanup also when a statement fails). `tables(name)` gives a
/// table's pyarrow schema, a view's SQL, or None.
#[pyfunction]
#[pyo3(signature = (loss, wrt, dialect, tables, max_derivative_nodes=None))]
pub(crate) fn gradient_statements_for(
    loss: &str,
    wrt: &str,
    dialect: &str,
    tables: Bound<'_, PyAny>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<Statements> {
    written_for(
        "gradient_statements",
        dialect,
        &tables,
        max_derivative_nodes,
        |dialect, catalog, options| gradient_statements(loss, wrt, dialect, catalog, options),
    )
}

/// A statement of the engine `dialect` with markers, `gradient(...)` calls
/// and markers over whole queries, as `(setup, statement, cleanup)` for that
/// engine: run in that order (cleanup also when a statement fails).
/// `tables` is as for `gradient_statements_for`.
#[pyfunction]
#[pyo3(signature = (sql, dialect, tables, max_derivative_nodes=None))]
pub(crate) fn engine_statements_for(
    sql: &str,
    dialect: &str,
    tables: Bound<'_, PyAny>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<Statements> {
    written_for(
        "engine_statements",
        dialect,
        &tables,
        max_derivative_nodes,
        |dialect, catalog, options| engine_sql(sql, dialect, catalog, options),
    )
}

/// `(setup, query, cleanup)`, as Python receives them.
type Statements = (Vec<String>, String, Vec<String>);

/// What `write` gives for the engine named `dialect`, over the relations
/// `tables` gives.
fn written_for(
    what: &str,
    dialect: &str,
    tables: &Bound<'_, PyAny>,
    max_derivative_nodes: Option<usize>,
    write: impl FnOnce(Dialect, Catalog, &AutogradOptions) -> Result<EngineStatements>,
) -> PyResult<Statements> {
    let relations = HostRelations::new(Some(tables));
    let catalog = |table: &TableReference| relations.get(table);
    let options = options(max_derivative_nodes);
    engine(what, || {
        let statements = write(dialect.parse()?, &catalog, &options)?;
        Ok((statements.setup, statements.query, statements.cleanup))
    })
}

/// The query of a view from the `CREATE VIEW` statement an engine keeps.
#[pyfunction]
pub(crate) fn view_query(sql: &str) -> PyResult<String> {
    engine("view_query", || query_of_view(sql))
}
