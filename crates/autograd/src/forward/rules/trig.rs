//! Trigonometric functions and angle units.

use std::f64::consts::PI;

use datafusion_common::Result;
use datafusion_expr::lit;
use datafusion_functions::math::expr_fn as f;

use super::{square, Call};
use crate::forward::tangent::Tangent;

/// d sin u = cos u · du
pub fn sin(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(f::cos(c.x(0)?)))
}

/// d cos u = −sin u · du
pub fn cos(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(f::sin(c.x(0)?)).neg())
}

/// d tan u = (1 + tan² u) · du
pub fn tan(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(lit(1.0) + square(c.out())))
}

/// d cot u = −(1 + cot² u) · du
pub fn cot(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(lit(1.0) + square(c.out())).neg())
}

/// d asin u = du / √(1 − u²)
pub fn asin(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(f::sqrt(lit(1.0) - square(c.x(0)?))))
}

/// d acos u = −du / √(1 − u²)
pub fn acos(c: &Call) -> Result<Tangent> {
    Ok(asin(c)?.neg())
}

/// d atan u = du / (1 + u²)
pub fn atan(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(lit(1.0) + square(c.x(0)?)))
}

/// d atan2(y, x) = (x · dy − y · dx) / (x² + y²)
pub fn atan2(c: &Call) -> Result<Tangent> {
    let (y, x) = (c.x(0)?, c.x(1)?);
    let norm = square(x.clone()) + square(y.clone());
    Ok(c.dx(0)?.times(x).minus(&c.dx(1)?.times(y)).over(norm))
}

/// d degrees(u) = (180 / π) · du
pub fn degrees(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(lit(180.0 / PI)))
}

/// d radians(u) = (π / 180) · du
pub fn radians(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(lit(PI / 180.0)))
}
