//! Tangents and the folding algebra that keeps derivatives small.
//!
//! A [`Tangent`] is the directional derivative of one subexpression. Its zero
//! is symbolic (like JAX's `Zero`): a subexpression that does not depend on a
//! seeded column never builds an expression, and multiplying by one or adding
//! zero never shows up in the output.

use datafusion_common::ScalarValue;
use datafusion_expr::expr::Case;
use datafusion_expr::{lit, Expr};

/// The tangent of a subexpression: symbolically zero, or an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Tangent {
    /// Structurally zero: the subexpression does not depend on any seed.
    Zero,
    /// A tangent that may be non-zero.
    Expr(Expr),
}

impl Tangent {
    /// Wraps `expr`, recognising a literal zero as [`Tangent::Zero`].
    pub fn new(expr: Expr) -> Self {
        if as_number(&expr) == Some(0.0) {
            Tangent::Zero
        } else {
            Tangent::Expr(expr)
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Tangent::Zero)
    }

    /// The tangent as an expression; zero becomes the literal `0.0`.
    pub fn into_expr(self) -> Expr {
        match self {
            Tangent::Zero => lit(0.0_f64),
            Tangent::Expr(e) => e,
        }
    }

    /// `factor · self`: the chain rule's step through one partial derivative.
    pub fn times(&self, factor: Expr) -> Tangent {
        let Tangent::Expr(t) = self else {
            return Tangent::Zero;
        };
        match (as_number(&factor), as_number(t)) {
            (Some(a), Some(b)) => Tangent::new(lit(a * b)),
            (Some(0.0), _) => Tangent::Zero,
            (Some(1.0), _) => self.clone(),
            (Some(-1.0), _) => self.neg(),
            (_, Some(1.0)) => Tangent::Expr(factor),
            (_, Some(-1.0)) => Tangent::Expr(negate(factor)),
            _ => Tangent::Expr(factor * t.clone()),
        }
    }

    /// `self / divisor`.
    pub fn over(&self, divisor: Expr) -> Tangent {
        let Tangent::Expr(t) = self else {
            return Tangent::Zero;
        };
        match (as_number(t), as_number(&divisor)) {
            (_, Some(1.0)) => self.clone(),
            (Some(a), Some(b)) if b != 0.0 => Tangent::new(lit(a / b)),
            _ => Tangent::Expr(t.clone() / divisor),
        }
    }

    /// `self + other`.
    pub fn plus(&self, other: &Tangent) -> Tangent {
        match (self, other) {
            (Tangent::Zero, t) | (t, Tangent::Zero) => t.clone(),
            (Tangent::Expr(a), Tangent::Expr(b)) => match (as_number(a), as_number(b)) {
                (Some(x), Some(y)) => Tangent::new(lit(x + y)),
                _ => Tangent::Expr(a.clone() + b.clone()),
            },
        }
    }

    /// `self - other`.
    pub fn minus(&self, other: &Tangent) -> Tangent {
        match (self, other) {
            (t, Tangent::Zero) => t.clone(),
            (Tangent::Zero, t) => t.neg(),
            (Tangent::Expr(a), Tangent::Expr(b)) => match (as_number(a), as_number(b)) {
                (Some(x), Some(y)) => Tangent::new(lit(x - y)),
                _ => Tangent::Expr(a.clone() - b.clone()),
            },
        }
    }

    /// `-self`.
    pub fn neg(&self) -> Tangent {
        match self {
            Tangent::Zero => Tangent::Zero,
            Tangent::Expr(e) => Tangent::Expr(negate(e.clone())),
        }
    }
}

/// The tangent of a choice, `CASE [base] WHEN cond THEN dt … [ELSE de] END`:
/// conditions are kept as written, each result is replaced by its tangent.
/// Zero when every result's tangent is.
pub fn choice(
    base: Option<Box<Expr>>,
    branches: impl IntoIterator<Item = (Expr, Tangent)>,
    otherwise: Option<Tangent>,
) -> Tangent {
    let branches: Vec<_> = branches.into_iter().collect();
    let all_zero = branches.iter().all(|(_, t)| t.is_zero())
        && otherwise.as_ref().is_none_or(Tangent::is_zero);
    if all_zero {
        return Tangent::Zero;
    }
    Tangent::Expr(Expr::Case(Case {
        expr: base,
        when_then_expr: branches
            .into_iter()
            .map(|(when, t)| (Box::new(when), Box::new(t.into_expr())))
            .collect(),
        else_expr: otherwise.map(|t| Box::new(t.into_expr())),
    }))
}

/// `-e`, folding literals and double negation.
pub fn negate(e: Expr) -> Expr {
    match e {
        Expr::Negative(inner) => *inner,
        e => match as_number(&e) {
            Some(x) => lit(-x),
            None => Expr::Negative(Box::new(e)),
        },
    }
}

/// The value of a finite numeric literal, if `e` is one.
pub fn as_number(e: &Expr) -> Option<f64> {
    let Expr::Literal(value, _) = e else {
        return None;
    };
    let x = match value {
        ScalarValue::Float64(Some(v)) => *v,
        ScalarValue::Float32(Some(v)) => f64::from(*v),
        ScalarValue::Int8(Some(v)) => f64::from(*v),
        ScalarValue::Int16(Some(v)) => f64::from(*v),
        ScalarValue::Int32(Some(v)) => f64::from(*v),
        ScalarValue::Int64(Some(v)) => *v as f64,
        ScalarValue::UInt8(Some(v)) => f64::from(*v),
        ScalarValue::UInt16(Some(v)) => f64::from(*v),
        ScalarValue::UInt32(Some(v)) => f64::from(*v),
        ScalarValue::UInt64(Some(v)) => *v as f64,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_expr::col;

    #[test]
    fn zero_and_one_fold_away() {
        let x = Tangent::new(col("x"));
        assert_eq!(x.times(lit(1.0)), x);
        assert!(x.times(lit(0.0)).is_zero());
        assert_eq!(
            Tangent::new(lit(1.0)).times(col("c")),
            Tangent::new(col("c"))
        );
        assert_eq!(Tangent::Zero.plus(&x), x);
        assert_eq!(x.minus(&Tangent::Zero), x);
        assert_eq!(Tangent::Zero.minus(&x), Tangent::new(-col("x")));
        assert_eq!(x.neg().neg(), x);
        assert_eq!(
            Tangent::new(lit(2.0)).times(lit(3.0)),
            Tangent::new(lit(6.0))
        );
        assert!(Tangent::new(lit(0.0)).is_zero());
    }
}
