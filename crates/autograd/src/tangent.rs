//! Tangents and the folding algebra that keeps derivatives small.
//!
//! A [`Tangent`] is the directional derivative of one subexpression. Its zero
//! is symbolic (like JAX's `Zero`): a subexpression that does not depend on a
//! seeded column never builds an expression, and multiplying by one or adding
//! zero never shows up in the output. A tangent knows its size in expression
//! nodes, kept up to date as tangents combine, so that the engine can stop a
//! derivative that grows past its limit as soon as it does.

use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::ScalarValue;
use datafusion_expr::expr::Case;
use datafusion_expr::{lit, Expr};

/// The tangent of a subexpression: symbolically zero, or an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Tangent {
    /// Structurally zero: the subexpression does not depend on any seed.
    Zero,
    /// A tangent that may be non-zero, and its number of expression nodes.
    Expr(Expr, usize),
}

impl Tangent {
    /// Wraps `expr`, recognising a literal zero as [`Tangent::Zero`].
    pub fn new(expr: Expr) -> Self {
        if as_number(&expr) == Some(0.0) {
            Tangent::Zero
        } else {
            let size = nodes(&expr);
            Tangent::Expr(expr, size)
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Tangent::Zero)
    }

    /// The number of expression nodes the tangent holds.
    pub fn nodes(&self) -> usize {
        match self {
            Tangent::Zero => 1,
            Tangent::Expr(_, size) => *size,
        }
    }

    /// The tangent as an expression; zero becomes the literal `0.0`.
    pub fn into_expr(self) -> Expr {
        match self {
            Tangent::Zero => lit(0.0_f64),
            Tangent::Expr(e, _) => e,
        }
    }

    /// `factor · self`: the chain rule's step through one partial derivative.
    pub fn times(&self, factor: Expr) -> Tangent {
        let Tangent::Expr(t, size) = self else {
            return Tangent::Zero;
        };
        match (as_number(&factor), as_number(t)) {
            (Some(a), Some(b)) => Tangent::new(lit(a * b)),
            (Some(0.0), _) => Tangent::Zero,
            (Some(1.0), _) => self.clone(),
            (Some(-1.0), _) => self.neg(),
            (_, Some(1.0)) => Tangent::new(factor),
            (_, Some(-1.0)) => Tangent::new(negate(factor)),
            _ => {
                let factor_size = nodes(&factor);
                Tangent::Expr(factor * t.clone(), factor_size + size + 1)
            }
        }
    }

    /// `self / divisor`.
    pub fn over(&self, divisor: Expr) -> Tangent {
        let Tangent::Expr(t, size) = self else {
            return Tangent::Zero;
        };
        match (as_number(t), as_number(&divisor)) {
            (_, Some(1.0)) => self.clone(),
            (Some(a), Some(b)) if b != 0.0 => Tangent::new(lit(a / b)),
            _ => {
                let divisor_size = nodes(&divisor);
                Tangent::Expr(t.clone() / divisor, size + divisor_size + 1)
            }
        }
    }

    /// `self + other`.
    pub fn plus(&self, other: &Tangent) -> Tangent {
        match (self, other) {
            (Tangent::Zero, t) | (t, Tangent::Zero) => t.clone(),
            (Tangent::Expr(a, m), Tangent::Expr(b, n)) => match (as_number(a), as_number(b)) {
                (Some(x), Some(y)) => Tangent::new(lit(x + y)),
                _ => Tangent::Expr(a.clone() + b.clone(), m + n + 1),
            },
        }
    }

    /// `self - other`.
    pub fn minus(&self, other: &Tangent) -> Tangent {
        match (self, other) {
            (t, Tangent::Zero) => t.clone(),
            (Tangent::Zero, t) => t.neg(),
            (Tangent::Expr(a, m), Tangent::Expr(b, n)) => match (as_number(a), as_number(b)) {
                (Some(x), Some(y)) => Tangent::new(lit(x - y)),
                _ => Tangent::Expr(a.clone() - b.clone(), m + n + 1),
            },
        }
    }

    /// `-self`.
    pub fn neg(&self) -> Tangent {
        match self {
            Tangent::Zero => Tangent::Zero,
            Tangent::Expr(e, size) => {
                let negated = negate(e.clone());
                let size = match &negated {
                    Expr::Negative(_) => size + 1,
                    Expr::Literal(..) => 1,
                    _ => size - 1,
                };
                Tangent::Expr(negated, size)
            }
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
    let size = 1
        + base.as_deref().map_or(0, nodes)
        + branches
            .iter()
            .map(|(w, t)| nodes(w) + t.nodes())
            .sum::<usize>()
        + otherwise.as_ref().map_or(0, Tangent::nodes);
    let case = Expr::Case(Case {
        expr: base,
        when_then_expr: branches
            .into_iter()
            .map(|(when, t)| (Box::new(when), Box::new(t.into_expr())))
            .collect(),
        else_expr: otherwise.map(|t| Box::new(t.into_expr())),
    });
    Tangent::Expr(case, size)
}

/// The number of nodes of `expr`, counted without recursion.
pub fn nodes(expr: &Expr) -> usize {
    let mut count = 0;
    let mut pending = vec![expr];
    while let Some(current) = pending.pop() {
        count += 1;
        let _ = current.apply_children(|child| {
            pending.push(child);
            Ok(TreeNodeRecursion::Continue)
        });
    }
    count
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
