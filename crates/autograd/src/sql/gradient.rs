//! Whole-query gradients as SQL text, for hosts that plan SQL themselves.

use std::sync::Arc;

use datafusion_common::Result;
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::LogicalPlan;

use super::emit::plans_to_sql;
use super::plan::plan_query;
use crate::catalog::{Catalog, Relation};
use crate::error::fail;
use crate::options::AutogradOptions;
use crate::relational::{gradients, gradients_and_loss, hvp, Direction, Parameter, Staged};
use crate::stack::with_room;

/// The gradient of the loss query `loss` with respect to `wrt`
/// (`"<table>.<column>"`), as one SQL query over the same relations for a
/// host that plans it itself: every row of the table, all its columns, and
/// `grad`. `tables` gives the host's tables (schemas) and views (queries) by
/// name. The relations the gradient reads more than once are common table
/// expressions.
///
/// ```
/// use std::sync::Arc;
/// use datafusion::arrow::datatypes::{DataType, Field, Schema};
/// use datafusion_autograd::{gradient_sql, Relation};
///
/// let w = Arc::new(Schema::new(vec![
///     Field::new("i", DataType::Int64, false),
///     Field::new("w", DataType::Float64, false),
/// ]));
/// let catalog = |table: &datafusion_common::TableReference| {
///     Ok((table.table() == "w").then(|| Relation::Table(Arc::clone(&w))))
/// };
/// let sql = gradient_sql("SELECT SUM(w * w) FROM w", "w.w", &catalog, &Default::default())
///     .unwrap();
/// assert!(sql.contains("grad"));
/// ```
pub fn gradient_sql(
    loss: &str,
    wrt: &str,
    tables: Catalog,
    options: &AutogradOptions,
) -> Result<String> {
    with_room(|| staged_to_sql(&plan_gradients(loss, &[wrt], tables, options)?, 0))
}

/// The gradients of the loss query `loss` with respect to every parameter
/// in `wrt` (each `"<table>.<column>"`), from one reverse pass, planned over
/// the relations `tables` knows: result `k` of the [`Staged`] is the
/// gradient for `wrt[k]`. Its scans of the host's tables read sources that
/// know the schemas only; a host that runs the plans gives them real ones
/// ([`Staged::with_sources`]).
pub fn plan_gradients(
    loss: &str,
    wrt: &[&str],
    tables: Catalog,
    options: &AutogradOptions,
) -> Result<Staged> {
    with_room(|| plan_gradients_of(&plan_loss(loss, tables)?, wrt, tables, options, false))
}

/// [`plan_gradients`] of a loss already planned; `with_loss`, with the
/// loss's row as one more result after the gradients where the pass keeps it
/// ([`gradients_and_loss`]).
pub(crate) fn plan_gradients_of(
    loss: &LogicalPlan,
    wrt: &[&str],
    tables: Catalog,
    options: &AutogradOptions,
    with_loss: bool,
) -> Result<Staged> {
    let parameters = wrt
        .iter()
        .map(|w| parameter(w, tables))
        .collect::<Result<Vec<_>>>()?;
    match with_loss {
        true => gradients_and_loss(loss, &parameters, options),
        false => gradients(loss, &parameters, options),
    }
}

/// The analyzed plan of the loss query `sql` over `tables`.
pub(crate) fn plan_loss(sql: &str, tables: Catalog) -> Result<LogicalPlan> {
    plan_query(sql, tables).map_err(|e| e.context("gradient(): planning the loss query"))
}

/// The parameter `wrt` (`"<table>.<column>"`) among `tables`.
pub(crate) fn parameter(wrt: &str, tables: Catalog) -> Result<Parameter> {
    let (table, column) = Parameter::parse(wrt)?;
    let schema = match tables(&table)? {
        Some(Relation::Table(schema)) => schema,
        Some(Relation::View(_)) => {
            return fail!(
                UnknownParameter,
                "gradient(): the parameter's table must be a table; {table} is a view"
            )
        }
        None => return fail!(UnknownParameter, "gradient(): table '{table}' not found"),
    };
    let source = Arc::new(LogicalTableSource::new(schema));
    Parameter::new(table, column, source, "datafusion", "public")
}

/// Result `k` of `staged` as one query, its stages common table expressions.
pub(crate) fn staged_to_sql(staged: &Staged, k: usize) -> Result<String> {
    let named: Vec<(&str, &LogicalPlan)> = staged
        .stages
        .iter()
        .map(|s| (s.name.as_str(), &s.plan))
        .collect();
    plans_to_sql(&named, &staged.results[k])
}

/// The direction of a Hessian-vector product, as SQL text gives it.
#[derive(Clone, Debug)]
pub enum Along {
    /// The same amount at every row.
    Everywhere(f64),
    /// A query of the table's other columns and a DOUBLE column `tangent`.
    Rows(String),
}

/// [`relational::hvp`](crate::relational::hvp) of the loss query `loss`
/// with respect to `wrt` (`"<table>.<column>"`) along `along`, planned over
/// the relations `tables` knows: one result with every row of the table,
/// all its columns, `grad` and `hvp`.
pub fn plan_hvp(
    loss: &str,
    wrt: &str,
    along: &Along,
    tables: Catalog,
    options: &AutogradOptions,
) -> Result<Staged> {
    with_room(|| {
        let loss = plan_loss(loss, tables)?;
        let parameter = parameter(wrt, tables)?;
        let direction = match along {
            Along::Everywhere(v) => Direction::Everywhere(*v),
            Along::Rows(query) => Direction::Rows(Box::new(
                plan_query(query, tables)
                    .map_err(|e| e.context("hvp(): planning the tangent query"))?,
            )),
        };
        hvp(&loss, &parameter, &direction, options)
    })
}
