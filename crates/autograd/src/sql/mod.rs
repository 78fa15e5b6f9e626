//! SQL text: differentiate it, plan it ([`plan`]), print it ([`emit`]), and
//! rewrite it for hosts that never call `simplify` ([`bridge`]).

use datafusion_common::{plan_err, Result};
use datafusion_expr::Expr;

use crate::marker::Derivative;
use crate::options::AutogradOptions;
use crate::reals::ColumnTypes;
use crate::stack::with_room;

pub(crate) mod bridge;
mod emit;
pub(crate) mod plan;

pub use emit::plan_to_sql;
pub(crate) use emit::to_sql;
pub(crate) use plan::plan_scalar;

/// The derivative of the SQL scalar expression `expr_sql` with respect to the
/// column `wrt`, as SQL.
///
/// Every identifier is a free DOUBLE variable (qualified names such as `a.x`
/// keep their qualifier); functions are DataFusion's built-ins plus the
/// markers, so nested `grad`/`jvp`/`vjp` calls give higher derivatives.
///
/// ```
/// use datafusion_autograd::differentiate_sql;
///
/// assert_eq!(differentiate_sql("x * x + 3 * y", "x").unwrap(), "x + x");
/// assert_eq!(differentiate_sql("sin(2 * x)", "x").unwrap(), "cos(2 * x) * 2.0");
/// ```
pub fn differentiate_sql(expr_sql: &str, wrt: &str) -> Result<String> {
    with_room(|| {
        let (exprs, _) = plan_scalar(&[expr_sql, wrt])?;
        let wrt = &exprs[1];
        if !matches!(wrt, Expr::Column(_)) {
            return plan_err!(
                "the variable to differentiate by must be a column name, found `{wrt}`"
            );
        }
        // Every free variable is a DOUBLE column, so the expression is real as written.
        let options = AutogradOptions::default();
        to_sql(&Derivative::Grad.expand(&exprs, ColumnTypes::Real, &options)?)
    })
}
