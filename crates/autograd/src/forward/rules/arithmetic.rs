//! Arithmetic operators.

use datafusion_common::Result;
use datafusion_functions::math::expr_fn::trunc;

use super::Call;
use crate::forward::tangent::Tangent;

/// d(u + v) = du + dv
pub fn add(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.plus(c.dx(1)?))
}

/// d(u − v) = du − dv
pub fn sub(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.minus(c.dx(1)?))
}

/// d(u · v) = v · du + u · dv
pub fn mul(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(c.x(1)?).plus(&c.dx(1)?.times(c.x(0)?)))
}

/// d(u / v) = du / v − u · dv / v²
///
/// Written without the primal quotient so that integer operands are
/// differentiated as the real division they stand for.
pub fn div(c: &Call) -> Result<Tangent> {
    let (u, v) = (c.x(0)?, c.x(1)?);
    let du_term = c.dx(0)?.over(v.clone());
    let dv_term = c.dx(1)?.times(u).over(v.clone() * v);
    Ok(du_term.minus(&dv_term))
}

/// d(u % v) = du − trunc(u / v) · dv, as `%` is the remainder of truncated division.
pub fn rem(c: &Call) -> Result<Tangent> {
    let quotient = trunc(vec![c.x(0)? / c.x(1)?]);
    Ok(c.dx(0)?.minus(&c.dx(1)?.times(quotient)))
}

/// d(−u) = −du
pub fn negative(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.neg())
}
