//! Differentiable SQL for Apache DataFusion.
//!
//! `grad(expr, column)`, `jvp(expr, column, tangent)` and
//! `vjp(expr, column, cotangent)` are scalar functions whose
//! [`simplify`](datafusion_expr::ScalarUDFImpl::simplify) hook returns the
//! derivative, so DataFusion's optimizer differentiates them *inside the
//! planner*, wherever a scalar expression may stand: projections, filters,
//! aggregates (`AVG(grad(loss, w))` is a gradient), recursive CTEs (a training
//! loop in one statement), `INSERT … SELECT`, `CREATE TABLE AS`, views,
//! subqueries and the DataFrame API. Each row is an evaluation point, so a
//! per-row `grad` is `vmap(grad(f))`.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use datafusion::prelude::SessionContext;
//!
//! let ctx = SessionContext::new();
//! datafusion_autograd::register(&ctx);
//! let df = ctx
//!     .sql("SELECT x, grad(sin(x) * x, x) AS slope FROM (VALUES (0.5), (2.0)) AS t(x)")
//!     .await
//!     .unwrap();
//! df.show().await.unwrap();
//! # });
//! ```
//!
//! The crate is layered, each module using only those listed before it:
//!
//! | module | job |
//! | --- | --- |
//! | `condition` | which expressions are truth values (derivative zero) |
//! | `tangent` | tangents and the algebra that keeps them small |
//! | `rules` | the table of calculus: one JVP rule per primitive ([`primitives`]) |
//! | `reals` | reading expressions over the reals ([`ColumnTypes`]) |
//! | `linearize` | forward mode over an expression |
//! | `marker` | what a marker means: [`Derivative`], [`expand_markers`], [`differentiate`], [`linearize()`] |
//! | `udf` | the markers as scalar UDFs, and [`expr_fn`] |
//! | `functions` | [`register`] and [`scalar_functions`] |
//! | `sql` | SQL text: [`differentiate_sql`] for DataFusion and other engines ([`Dialect`]), and [`rewrite_sql`] for hosts that never call `simplify` |

mod condition;
mod functions;
mod linearize;
mod marker;
mod options;
mod reals;
pub mod relational;
mod rules;
mod sql;
mod stack;
mod tangent;
mod udf;

pub use functions::register;
pub use marker::{differentiate, expand_markers, linearize, Derivative};
pub use options::AutogradOptions;
pub use reals::ColumnTypes;
pub use rules::primitives;
pub use stack::depth as expression_depth;
pub use sql::bridge::{rewrite_sql, Rewritten};
pub use sql::plan::{Catalog, Relation};
pub use sql::{
    check_grad, check_grad_sql, differentiate_sql, plan_to_sql, Dialect, GradCheck,
};
pub use udf::{
    expr_fn, grad_udf, jvp_udf, scalar_functions, udf, udfs, vjp_udf, DerivativeUdf, NOT_SIMPLIFIED,
};
