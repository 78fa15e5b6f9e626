//! Exponentials and logarithms.

use std::f64::consts::{LN_10, LN_2};
use std::sync::Arc;

use datafusion_common::Result;
use datafusion_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion_expr::{lit, BinaryExpr, Expr, Operator};
use datafusion_functions::math::expr_fn::ln as ln_fn;

use super::Call;
use crate::forward::tangent::{as_number, negate, Tangent};

/// d eᵘ = eᵘ · du
pub fn exp(c: &Call) -> Result<Tangent> {
    Ok(c.dx(0)?.times(c.out()))
}

/// d ln u = du / u
///
/// For softplus, u = 1 + eᵛ, du = eᵛ · dv and du / u is the logistic sigmoid
/// times dv, written dv / (1 + e⁻ᵛ): one exponential instead of two, and
/// dv rather than inf / inf = NaN where eᵛ overflows.
pub fn ln(c: &Call) -> Result<Tangent> {
    let (u, du) = (c.x(0)?, c.dx(0)?);
    if let Some((exp_v, exp)) = one_plus_exp(&u) {
        if let Some(dv) = du.cancel_factor(exp_v) {
            let v = exp.args[0].clone();
            let exp_minus_v = ScalarFunction::new_udf(Arc::clone(&exp.func), vec![negate(v)]);
            return Ok(dv.over(lit(1.0) + Expr::ScalarFunction(exp_minus_v)));
        }
    }
    Ok(du.over(u))
}

/// The call `eᵛ` when `u` is `1 + eᵛ` or `eᵛ + 1`.
fn one_plus_exp(u: &Expr) -> Option<(&Expr, &ScalarFunction)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Plus,
        right,
    }) = u
    else {
        return None;
    };
    let (one, exp_v) = if is_one(left) {
        (left, right)
    } else {
        (right, left)
    };
    match exp_v.as_ref() {
        Expr::ScalarFunction(exp) if is_one(one) && exp.name() == "exp" && exp.args.len() == 1 => {
            Some((exp_v, exp))
        }
        _ => None,
    }
}

/// Whether `e` is the number 1, as a literal or a cast of one.
fn is_one(e: &Expr) -> bool {
    match e {
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => is_one(expr),
        e => as_number(e) == Some(1.0),
    }
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
