//! Hyperbolic functions and their inverses.

use datafusion_common::Result;
use datafusion_expr::lit;
use datafusion_functions::math::expr_fn as f;

use super::{square, Call};
use crate::forward::tangent::Tangent;

/// d sinh u = cosh u · du
pub fn sinh(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(f::cosh(c.x(0)?)))
}

/// d cosh u = sinh u · du
pub fn cosh(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(f::sinh(c.x(0)?)))
}

/// d tanh u = (1 − tanh² u) · du
pub fn tanh(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(lit(1.0) - square(c.out())))
}

/// d asinh u = du / √(u² + 1)
pub fn asinh(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(f::sqrt(square(c.x(0)?) + lit(1.0))))
}

/// d acosh u = du / √(u² − 1)
pub fn acosh(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(f::sqrt(square(c.x(0)?) - lit(1.0))))
}

/// d atanh u = du / (1 − u²)
pub fn atanh(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(lit(1.0) - square(c.x(0)?)))
}
