//! Derivatives given, not derived: `stop_gradient(u)` holds its argument's
//! value and passes no derivative (JAX's `lax.stop_gradient`), and a value
//! whose derivative the planner already knows (a whole query's gradient at
//! the row) passes that.

use datafusion_common::Result;
use datafusion_expr::Expr;

use super::Call;
use crate::forward::tangent::Tangent;

/// d stop_gradient(u) = 0
pub fn stop_gradient(_: &Call) -> Result<Tangent> {
    Ok(Tangent::Zero)
}

/// d with_derivative(u, ∂u/∂c, c) = ∂u/∂c · dc: the value `u` (a subquery
/// over a whole table) with its derivative by the column `c` at this row.
pub fn with_derivative(c: &Call) -> Result<Tangent> {
    let derivative: Expr = c.x(1)?;
    Ok(c.dx(2)?.times(derivative))
}
