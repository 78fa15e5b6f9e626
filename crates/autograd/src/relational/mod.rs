//! Gradients of whole queries: reverse-mode differentiation through
//! relational operators, from plans to plans.
//!
//! [`gradient`] takes a *loss*, an analyzed plan that returns one row with
//! one numeric column, and a [`Parameter`], a numeric column of a table the
//! loss reads. It returns plans ([`Staged`]) with every row of that table,
//! all its columns, and a DOUBLE column `grad` holding ∂loss/∂(that row's
//! value of the column). [`gradients`] does the same for several parameters
//! in one pass. Nothing here reads a row: hosts run the plans.
//!
//! # How
//!
//! The loss is a tree of operators. Each operator has one rule in
//! [`operators`], like a primitive has one rule in the forward engine:
//!
//! - **forward**: the operator's rows, with extra columns that let the
//!   reverse pass find the input rows each output row came from (an
//!   *augmented* plan);
//! - **backward**: given *contributions* to the cotangents of the operator's
//!   output rows, the contributions to its inputs' rows.
//!
//! A contribution is a row of the augmented plan with a cotangent for each of
//! its differentiable columns; a row's cotangent is the sum of its
//! contributions, so rules never need to sum them by row, and no row needs an
//! identity. Row-preserving operators (projection, filter, window) and joins
//! pass contributions down row by row, with the scalar engine's derivative for
//! projected expressions. Reductions (`GROUP BY`, window aggregates) sum the
//! contributions per group and join them back onto their input rows by the
//! group's key, which is all the identity a row ever needs. At a parameter's
//! table, contributions are summed per row: identical rows of a table are
//! interchangeable in every query, so each gets an equal share of what their
//! group of copies received. Nothing depends on the order rows arrive in.

mod assemble;
mod augment;
mod backprop;
mod eager;
mod fanout;
mod jvp;
mod lineage;
mod loss;
mod operators;
mod parameter;
mod pass;
mod pullback;
mod reductions;
mod rule;
mod staged;
mod substitution;

use datafusion_common::Result;
use datafusion_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder};

use crate::options::AutogradOptions;
use crate::stack::with_room;

pub use assemble::GRADIENT_COLUMN;
pub(crate) use augment::join;
pub use jvp::{Direction, TANGENT_COLUMN};
pub(crate) use loss::reads_a_parameter;
pub use parameter::Parameter;
use pass::Pass;
pub use staged::{Stage, StageSource, Staged};

/// The gradient of `loss` with respect to `parameter`: every row of the
/// parameter's table, all its columns, and `grad`, as plans in stages (see
/// [`Staged`]; its one result is the gradient).
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
    gradients(loss, std::slice::from_ref(parameter), options)
}

/// The gradients of `loss` with respect to every parameter in `parameters`,
/// from one reverse pass: result `k` of the returned [`Staged`] is the
/// gradient for `parameters[k]`, and every relation the pass computes is
/// shared by all of them.
pub fn gradients(
    loss: &LogicalPlan,
    parameters: &[Parameter],
    options: &AutogradOptions,
) -> Result<Staged> {
    differentiate(loss, parameters, options, false)
}

/// [`gradients`], and after the gradients one more result where the pass
/// keeps the loss's value as the loss query returns it: its one row, its
/// column under the query's name and type. A statement that reads the loss
/// again reads it there instead of computing it a second time. No such
/// result when the pass computes no value of its own (a loss that reads
/// no parameter) or computes it in another type.
pub fn gradients_and_loss(
    loss: &LogicalPlan,
    parameters: &[Parameter],
    options: &AutogradOptions,
) -> Result<Staged> {
    differentiate(loss, parameters, options, true)
}

/// One reverse pass through `loss`; with `the_loss`, its row is a result too.
fn differentiate(
    loss: &LogicalPlan,
    parameters: &[Parameter],
    options: &AutogradOptions,
    the_loss: bool,
) -> Result<Staged> {
    with_room(|| {
        let loss = loss::normalize(loss, parameters, options)?;
        Pass::new(parameters, options)
            .keeping_the_loss(the_loss)
            .differentiate(&loss)?
            .read_once_inlined()
    })
}

/// The name of the column of [`hvp`]'s result that holds the product.
pub const HVP_COLUMN: &str = "hvp";

/// The Hessian of `loss` with respect to `parameter`, times the direction
/// `along`: every row of the parameter's table, all its columns, `grad`
/// (∂loss/∂ that row's value) and `hvp` (row r of ∇²loss · v, v the
/// direction's value at every row). It is forward mode over relations
/// through the gradient's plans — JAX's `jvp(grad(f))` — so it costs a small
/// multiple of the gradient, and the Hessian itself is never formed.
pub fn hvp(
    loss: &LogicalPlan,
    parameter: &Parameter,
    along: &Direction,
    options: &AutogradOptions,
) -> Result<Staged> {
    with_room(|| {
        let staged = gradients(loss, std::slice::from_ref(parameter), options)?;
        let (dual, tangents) = jvp::Forward::new(parameter, along, options).staged(&staged)?;
        let result = &dual.results[0];
        let width = staged.results[0].schema().fields().len();
        let mut exprs: Vec<Expr> = result.schema().columns()[..width]
            .iter()
            .cloned()
            .map(Expr::Column)
            .collect();
        let product = match &tangents[0][width - 1] {
            Some(t) => Expr::Column(t.clone()),
            None => lit(0.0_f64),
        };
        exprs.push(product.alias(HVP_COLUMN));
        let result = LogicalPlanBuilder::from(result.clone())
            .project(exprs)?
            .build()?;
        Staged {
            stages: dual.stages,
            results: vec![result],
        }
        .read_once_inlined()
    })
}

/// `query`'s rows with, for each of its columns that depends on
/// `parameter`, a column `<name>_tangent` beside it: the derivative of that
/// column's value at the row as the parameter's values move along `along`
/// (forward mode over relations; JAX's `jvp` of a whole query). For a loss,
/// one row: its value and `∇loss · v`.
pub fn jvp(
    query: &LogicalPlan,
    parameter: &Parameter,
    along: &Direction,
    options: &AutogradOptions,
) -> Result<Staged> {
    with_room(|| {
        let query = loss::prepare(query, std::slice::from_ref(parameter), options)?;
        let staged = Staged {
            stages: vec![],
            results: vec![query.clone()],
        };
        let (dual, tangents) = jvp::Forward::new(parameter, along, options).staged(&staged)?;
        let result = &dual.results[0];
        let columns = query.schema().columns();
        let mut exprs: Vec<Expr> = result.schema().columns()[..columns.len()]
            .iter()
            .cloned()
            .map(Expr::Column)
            .collect();
        for (column, t) in columns.iter().zip(&tangents[0]) {
            if let Some(t) = t {
                exprs.push(Expr::Column(t.clone()).alias(format!("{}_tangent", column.name)));
            }
        }
        let result = LogicalPlanBuilder::from(result.clone())
            .project(exprs)?
            .build()?;
        Staged {
            stages: dual.stages,
            results: vec![result],
        }
        .read_once_inlined()
    })
}
