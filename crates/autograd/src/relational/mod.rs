//! Gradients of whole queries: reverse-mode differentiation through
//! relational operators.
//!
//! [`gradient`] takes a *loss*, a query that returns one row with one numeric
//! column, and a [`Parameter`], a numeric column of a table the loss reads.
//! It returns a plan with every row of that table, all its columns, and a
//! DOUBLE column `grad` holding ∂loss/∂(that row's value of the column).
//!
//! # How
//!
//! The loss is a tree of operators. Each operator has one rule in
//! [`operators`], like a primitive has one rule in [`crate::rules`]:
//!
//! - **forward**: the operator's rows, with extra columns that let the
//!   reverse pass find the input rows each output row came from (an
//!   *augmented* plan, [`Augmented`]);
//! - **backward**: given *contributions* to the cotangents of the operator's
//!   output rows ([`Bar`]), the contributions to its inputs' rows.
//!
//! A contribution is a row of the augmented plan with a cotangent for each of
//! its differentiable columns; a row's cotangent is the sum of its
//! contributions, so rules never need to sum them by row, and no row needs an
//! identity. Row-preserving operators (projection, filter, window) and joins
//! pass contributions down row by row, with the scalar engine's derivative for
//! projected expressions. Reductions (`GROUP BY`, window aggregates) sum the
//! contributions per group and join them back onto their input rows by the
//! group's key, which is all the identity a row ever needs. At the parameter's
//! table, contributions are summed per row: identical rows of a table are
//! interchangeable in every query, so each gets an equal share of what their
//! group of copies received. Nothing depends on the order rows arrive in.

mod activity;
mod assemble;
mod augment;
mod backprop;
mod loss;
mod operators;
mod parameter;
mod pass;
mod reductions;
mod rule;
mod staged;
mod substitution;
mod table_function;

use std::sync::Arc;

use datafusion_common::{plan_err, Result, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::LogicalPlan;

use crate::options::AutogradOptions;
use crate::sql::plan::{plan_query, Catalog, Relation};

use crate::stack::with_room;
pub use assemble::GRADIENT_COLUMN;
pub use parameter::Parameter;
use pass::Pass;
pub use staged::{GradientTable, Staged, StagedSql};
pub use table_function::GradientFunction;

/// The gradient of `loss` with respect to `parameter`: every row of the
/// parameter's table, all its columns, and `grad`, as a plan in stages (see
/// [`Staged`]; [`GradientTable`] runs it as a table).
///
/// `loss` is an analyzed plan (as [`SessionState::create_logical_plan`]
/// followed by the analyzer gives it); it must return exactly one row and one
/// numeric column. `grad`/`jvp`/`vjp` markers inside it are differentiated
/// first.
///
/// [`SessionState::create_logical_plan`]: datafusion::execution::SessionState::create_logical_plan
pub fn gradient(
    loss: &LogicalPlan,
    parameter: &Parameter,
    options: &AutogradOptions,
) -> Result<Staged> {
    with_room(|| {
        let loss = loss::normalize(loss, parameter, options)?;
        if loss.schema().fields().len() != 1 {
            return plan_err!(
                "gradient(): the loss query must return one column, found {}",
                loss.schema().fields().len()
            );
        }
        if !loss.schema().field(0).data_type().is_numeric() {
            return plan_err!(
                "gradient(): the loss must be numeric, found {}",
                loss.schema().field(0).data_type()
            );
        }
        if !loss::returns_one_row(&loss) {
            return plan_err!(
                "gradient(): the loss query must return exactly one row; make its outermost \
                 operation an aggregate without GROUP BY, for example SELECT SUM(…) or AVG(…)"
            );
        }
        Pass::new(parameter, options).differentiate(&loss)
    })
}

/// The gradient of the loss query `loss` with respect to `wrt`
/// (`"<table>.<column>"`), as SQL over the same tables for a host that plans
/// it itself: statements that create its stages, and the query that reads
/// them. `tables` gives the host's tables (schemas) and views (queries) by
/// name.
///
/// ```
/// use std::sync::Arc;
/// use datafusion::arrow::datatypes::{DataType, Field, Schema};
/// use datafusion_autograd::relational::gradient_sql;
/// use datafusion_autograd::Relation;
///
/// let w = Arc::new(Schema::new(vec![
///     Field::new("i", DataType::Int64, false),
///     Field::new("w", DataType::Float64, false),
/// ]));
/// let catalog = |table: &datafusion_common::TableReference| {
///     Ok((table.table() == "w").then(|| Relation::Table(Arc::clone(&w))))
/// };
/// let sql = gradient_sql("SELECT SUM(w * w) FROM w", "w.w", &catalog, &Default::default())
/// .unwrap();
/// assert!(sql.query.contains("grad"));
/// ```
pub fn gradient_sql(
    loss: &str,
    wrt: &str,
    tables: Catalog,
    options: &AutogradOptions,
) -> Result<StagedSql> {
    with_room(|| {
        let loss = plan_query(loss, tables)
            .map_err(|e| e.context("gradient(): planning the loss query"))?;
        let Some((table, column)) = wrt.rsplit_once('.') else {
            return plan_err!(
                "gradient(): the parameter must be written table.column, found '{wrt}'"
            );
        };
        let table = TableReference::parse_str(table);
        let schema = match tables(&table)? {
            Some(Relation::Table(schema)) => schema,
            Some(Relation::View(_)) => {
                return plan_err!(
                    "gradient(): the parameter's table must be a table; {table} is a view"
                )
            }
            None => return plan_err!("gradient(): table '{table}' not found"),
        };
        let source = Arc::new(LogicalTableSource::new(schema));
        let parameter = Parameter::new(table, column, source, "datafusion", "public")?;
        gradient(&loss, &parameter, options)?.to_sql()
    })
}
