//! NULL-handling functions: the derivative follows the argument that was chosen.

use datafusion_common::Result;

use super::Call;
use crate::forward::tangent::{choice, Tangent};

/// d coalesce(u₁, …, uₙ) = duᵢ for the first non-NULL uᵢ (also `nvl`).
pub fn coalesce(c: &Call) -> Result<Tangent> {
    let n = c.arity();
    let branches = c.args()[..n.saturating_sub(1)]
        .iter()
        .zip(c.tangents())
        .map(|(u, du)| (u.clone().is_not_null(), du.clone()));
    Ok(choice(
        None,
        branches,
        Some(c.dx(n.saturating_sub(1))?.clone()),
    ))
}

/// d nullif(u, v) = du where the result is not NULL; NULL where it is.
pub fn nullif(c: &Call) -> Result<Tangent> {
    Ok(choice(
        None,
        [(c.out().is_not_null(), c.dx(0)?.clone())],
        None,
    ))
}

/// d nvl2(u, v, w) = dv where u is not NULL, else dw.
pub fn nvl2(c: &Call) -> Result<Tangent> {
    let present = c.x(0)?.is_not_null();
    Ok(choice(
        None,
        [(present, c.dx(1)?.clone())],
        Some(c.dx(2)?.clone()),
    ))
}
