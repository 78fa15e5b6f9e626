//! SQL text: differentiate it, plan it ([`plan`]), print it ([`emit`]), and
//! rewrite it for hosts that never call `simplify` ([`bridge`]).

use datafusion_common::Result;
use datafusion_expr::Expr;

use crate::error::fail;
use crate::forward::marker::Derivative;
use crate::forward::reals::ColumnTypes;
use crate::options::AutogradOptions;
use crate::stack::with_room;

pub(crate) mod bridge;
mod check;
pub(crate) mod dialect;
mod emit;
mod engines;
mod gradient;
mod memo;
pub(crate) mod plan;
mod scopes;

pub use check::{check_grad, check_grad_sql, GradCheck};
pub use dialect::Dialect;
pub use emit::plan_to_sql;
pub(crate) use emit::{formed_to_sql, to_sql};
pub use engines::{engine_sql, gradient_statements, view_query, EngineStatements};
pub use gradient::{gradient_sql, plan_gradients, plan_hvp, Along};
pub use memo::{rewrite_sql_kept, StatementMemo};
pub(crate) use plan::plan_scalar;

/// The derivative of the SQL scalar expression `expr_sql` with respect to the
/// column `wrt`, as SQL for the engine `dialect`.
///
/// The expression is read as DataFusion SQL: every identifier is a free
/// DOUBLE variable (qualified names such as `a.x` keep their qualifier);
/// functions are DataFusion's built-ins plus the markers, so nested
/// `grad`/`jvp`/`vjp` calls give higher derivatives. The derivative is
/// written for `dialect` to compute what DataFusion would; a function the
/// engine has no spelling for is an error that names it.
///
/// ```
/// use datafusion_autograd::{differentiate_sql, Dialect};
///
/// assert_eq!(differentiate_sql("x * x + 3 * y", "x", Dialect::DataFusion).unwrap(), "x * 2.0");
/// assert_eq!(
///     differentiate_sql("sin(2 * x)", "x", Dialect::DataFusion).unwrap(),
///     "cos(2 * x) * 2.0"
/// );
/// assert_eq!(
///     differentiate_sql("x * log2(y)", "x", Dialect::PostgreSql).unwrap(),
///     r#"ln("y") / ln(2.0)"#
/// );
/// let e = differentiate_sql("sin(x % y)", "x", Dialect::PostgreSql).unwrap_err();
/// assert!(e.to_string().contains("postgresql has no spelling for '%'"));
/// ```
pub fn differentiate_sql(expr_sql: &str, wrt: &str, dialect: Dialect) -> Result<String> {
    with_room(|| {
        let (exprs, schema) = plan_scalar(&[expr_sql, wrt])?;
        let wrt = &exprs[1];
        if !matches!(wrt, Expr::Column(_)) {
            return fail!(
                UnknownParameter,
                "the variable to differentiate by must be a column name, found `{wrt}`"
            );
        }
        // Every free variable is a DOUBLE column, so the expression is real as written.
        let options = AutogradOptions::default();
        let derivative = Derivative::Grad.expand(&exprs, ColumnTypes::Real, &options)?;
        emit::to_dialect_sql(&derivative, &schema, dialect)
    })
}
