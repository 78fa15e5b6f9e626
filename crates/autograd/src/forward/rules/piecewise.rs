//! Piecewise functions: derivatives that follow the active piece.

use datafusion_common::Result;
use datafusion_expr::Expr;
use datafusion_functions::math::expr_fn::signum;

use super::Call;
use crate::forward::tangent::{choice, Tangent};

/// d|u| = signum(u) · du
pub fn abs(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(signum(c.x(0)?)))
}

/// Step functions (`signum`, `floor`, `ceil`, `round`, `trunc`) are constant
/// almost everywhere: their derivative is zero.
pub fn constant(_: &Call) -> Result<Tangent> {
    Ok(Tangent::Zero)
}

/// d greatest(u₁, …, uₙ) = duᵢ for the first uᵢ that attains the maximum;
/// `relu(x) = greatest(x, 0)` gets derivative 1 for x ≥ 0 and 0 below.
pub fn greatest(c: &Call) -> Result<Tangent> {
    extremum(c, Expr::gt_eq)
}

/// d least(u₁, …, uₙ) = duᵢ for the first uᵢ that attains the minimum.
pub fn least(c: &Call) -> Result<Tangent> {
    extremum(c, Expr::lt_eq)
}

/// The tangent of the argument an extremum picks. With two arguments a
/// comparison decides, without computing the extremum again; NULLs are
/// skipped, as the functions skip them.
fn extremum(c: &Call, wins: fn(Expr, Expr) -> Expr) -> Result<Tangent> {
    if c.arity() == 2 {
        let (u, v) = (c.x(0)?, c.x(1)?);
        let u_chosen = v.clone().is_null().or(wins(u, v));
        return Ok(choice(
            None,
            [(u_chosen, c.dx(0)?.clone())],
            Some(c.dx(1)?.clone()),
        ));
    }
    let branches = c
        .args()
        .iter()
        .zip(c.tangents())
        .map(|(u, du)| (u.clone().eq(c.out()), du.clone()));
    Ok(choice(None, branches, None))
}
