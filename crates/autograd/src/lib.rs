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
//! for udf in datafusion_autograd::udfs() {
//!     ctx.register_udf(udf.as_ref().clone());
//! }
//! let df = ctx
//!     .sql("SELECT x, grad(sin(x) * x, x) AS slope FROM (VALUES (0.5), (2.0)) AS t(x)")
//!     .await
//!     .unwrap();
//! df.show().await.unwrap();
//! # });
//! ```
//!
//! The engine is forward-mode, one rule per primitive (see [`primitives`]):
//! [`linearize`] for arbitrary tangent seeds, [`differentiate`] for one
//! column, [`differentiate_sql`] for SQL text.

mod bridge;
mod linearize;
mod rules;
mod sql;
mod tangent;
mod udf;

pub use bridge::{expand_detached, rewrite_sql};
pub use linearize::{differentiate, linearize};
pub use rules::primitives;
pub use sql::differentiate_sql;
pub use udf::{expr_fn, grad_udf, jvp_udf, udfs, vjp_udf, Derivative, DerivativeUdf};
