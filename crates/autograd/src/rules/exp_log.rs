//! Exponentials and logarithms.

use std::f64::consts::{LN_10, LN_2};

use datafusion_common::Result;
use datafusion_expr::lit;
use datafusion_functions::math::expr_fn::ln as ln_fn;

use super::Call;
use crate::tangent::Tangent;

/// d eᵘ = eᵘ · du
pub fn exp(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(c.out()))
}

/// d ln u = du / u
pub fn ln(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(c.x(0)?))
}

/// `log(u)` is the base-10 logarithm; for `log(b, u)` = ln u / ln b:
/// d log_b u = du / (u · ln b) − log_b u · db / (b · ln b)
pub fn log(c: &Call) -> Result<Tangent> {
    if c.arity() == 1 {
        return Ok(c.dx(0)?.over(c.x(0)? * lit(LN_10)));
    }
    let (b, u) = (c.x(0)?, c.x(1)?);
    let ln_b = ln_fn(b.clone());
    let du_term = c.dx(1)?.over(u * ln_b.clone());
    let db_term = c.dx(0)?.times(c.out()).over(b * ln_b);
    Ok(du_term.minus(&db_term))
}

/// d log₂ u = du / (u · ln 2)
pub fn log2(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(c.x(0)? * lit(LN_2)))
}

/// d log₁₀ u = du / (u · ln 10)
pub fn log10(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(c.x(0)? * lit(LN_10)))
}
