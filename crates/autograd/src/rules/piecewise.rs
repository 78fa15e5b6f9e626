//! Piecewise functions: derivatives that follow the active piece.

use datafusion_common::Result;
use datafusion_functions::math::expr_fn::signum;

use super::Call;
use crate::tangent::{choice, Tangent};

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
    extremum(c)
}

/// d least(u₁, …, uₙ) = duᵢ for the first uᵢ that attains the minimum.
pub fn least(c: &Call) -> Result<Tangent> {
    extremum(c)
}

fn extremum(c: &Call) -> Result<Tangent> {
    let branches = c
        .args()
        .iter()
        .zip(c.tangents())
        .map(|(u, du)| (u.clone().eq(c.out()), du.clone()));
    Ok(choice(None, branches, None))
}
