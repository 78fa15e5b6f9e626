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
//! | `error`, `options`, `stack`, `catalog` | what every layer shares: [`ErrorKind`], [`AutogradOptions`], stack room, [`Catalog`] |
//! | `forward` | the forward engine: one JVP rule per primitive ([`primitives`]), [`differentiate`], [`linearize()`], the markers as UDFs |
//! | [`relational`] | the reverse engine: gradients of whole queries, from plans to plans |
//! | `sql` | SQL text: [`differentiate_sql`] for DataFusion and other engines ([`Dialect`]), [`gradient_sql`], and [`rewrite_sql`] for hosts that never call `simplify` |
//! | `table`, `functions` | the face: the `gradient()` table function, the table that runs a gradient, [`register`] |

mod catalog;
mod error;
mod forward;
mod functions;
mod options;
pub mod relational;
mod sql;
mod stack;
mod table;

pub use catalog::{Catalog, Relation};
pub use error::{autograd_error, error_kind, AutogradError, ErrorKind};
pub use forward::marker::{differentiate, expand_markers, linearize, Derivative};
pub use forward::reals::ColumnTypes;
pub use forward::rules::primitives;
pub use forward::udf::{
    expr_fn, grad_udf, jvp_udf, scalar_functions, stop_gradient_udf, udf, udfs, vjp_udf,
    DerivativeUdf, StopGradient, NOT_SIMPLIFIED,
};
pub use functions::register;
pub use options::AutogradOptions;
pub use sql::bridge::{rewrite_sql, rewrite_sql_with, Placement};
pub use sql::{
    check_grad, check_grad_sql, differentiate_sql, engine_sql, gradient_sql, gradient_statements,
    plan_gradients, plan_hvp, plan_to_sql, rewrite_sql_kept, view_query, Along, Dialect,
    EngineStatements, GradCheck, StatementMemo,
};
pub use stack::depth as expression_depth;
pub use table::{GradientFunction, GradientTable, PlanMemo, WholeQueryMarkers};
