//! Powers and roots.

use datafusion_common::Result;
use datafusion_expr::{lit, Expr};
use datafusion_functions::math::expr_fn::ln;

use super::Call;
use crate::forward::tangent::{as_number, Tangent};

/// d(u^v) = v · u^(v−1) · du + u^v · ln(u) · dv
///
/// The base term is written with `u^(v−1)` rather than `u^v / u`, so it stays
/// finite at `u = 0`; a literal exponent is folded (`d(u^2) = 2 · u · du`).
pub fn power(c: &Call) -> Result<Tangent> {
    let (u, v) = (c.x(0)?, c.x(1)?);
    let base_term = c.dx(0)?.times(match as_number(&v) {
        Some(k) => lit(k) * power_of(u.clone(), k - 1.0),
        None => v.clone() * datafusion_functions::math::expr_fn::power(u.clone(), v - lit(1.0)),
    });
    let exponent_term = c.dx(1)?.times(c.out() * ln(u));
    Ok(base_term.plus(&exponent_term))
}

/// d√u = du / (2 · √u)
pub fn sqrt(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(lit(2.0) * c.out()))
}

/// d∛u = du / (3 · ∛u²)
pub fn cbrt(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.over(lit(3.0) * c.out() * c.out()))
}

/// `u^k` for a literal `k`, without the trivial powers.
fn power_of(u: Expr, k: f64) -> Expr {
    match k {
        0.0 => lit(1.0),
        1.0 => u,
        2.0 => u.clone() * u,
        _ => datafusion_functions::math::expr_fn::power(u, lit(k)),
    }
}
