//! Tangents and the algebra that keeps derivatives small.
//!
//! A [`Tangent`] is the directional derivative of one subexpression. Its zero
//! is symbolic (like JAX's `Zero`): a subexpression that does not depend on a
//! seeded column never builds an expression. Any other tangent is held as a
//! sum of [`Term`]s, each a literal coefficient times factors over divisors,
//! and written out as an expression only when a rule needs one or the
//! derivative is done. The algebra's rules:
//!
//! - **constants fold**: literals multiply into a term's coefficient, through
//!   products, quotients, negations and chains of the chain rule, so `1.5 ·
//!   (1.5 · (1.5 · t))` is `3.375 · t` and `x · 1`, `0 · x`, `--x` never
//!   appear;
//! - **like terms collect**: terms with the same factors and divisors (in any
//!   order) add their coefficients, and cancel when those sum to zero, so
//!   `x · 3 + 3 · x` is `6 · x`;
//! - **products of the primal split along their chain**: `3 * x * x`, which
//!   SQL parses as `(3 * x) * x`, reads as the coefficient 3 and the factors
//!   `x, x`; a square `u * u` keeps both copies of `u` whole, and any other
//!   right operand is one factor, so splitting never copies a subexpression
//!   more often than the primal holds it;
//! - **no distribution over sums**: a sum multiplied or divided by anything
//!   but a constant becomes one factor, so a tangent never grows faster than
//!   the rules build it, and the primal subexpressions it reuses stay whole
//!   for common-subexpression elimination.
//!
//! A tangent knows its size in expression nodes, kept up to date as tangents
//! combine, so that the engine can stop a derivative that grows past its
//! limit as soon as it does.

use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::ScalarValue;
use datafusion_expr::expr::Case;
use datafusion_expr::{lit, BinaryExpr, Expr, Operator};

/// The tangent of a subexpression: symbolically zero, or a sum of terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Tangent {
    /// Structurally zero: the subexpression does not depend on any seed.
    Zero,
    /// A tangent that may be non-zero: at least one term, none with a zero
    /// coefficient.
    Sum(Vec<Term>),
}

/// `coefficient · factor₁ · factor₂ ⋯ / (divisor₁ · divisor₂ ⋯)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    coefficient: f64,
    factors: Vec<Expr>,
    divisors: Vec<Expr>,
    /// Expression nodes in `factors` and `divisors`.
    size: usize,
}

impl Term {
    fn constant(coefficient: f64) -> Self {
        Term {
            coefficient,
            factors: vec![],
            divisors: vec![],
            size: 0,
        }
    }

    fn factor(e: Expr) -> Self {
        let size = nodes(&e);
        Term {
            coefficient: 1.0,
            factors: vec![e],
            divisors: vec![],
            size,
        }
    }

    /// `e` read as a term: a finite literal is a coefficient, a negation
    /// flips the coefficient's sign, and a product splits along its left
    /// operand (the chain `a * b * c` parses to), a literal right operand
    /// joining the coefficient. A square `u * u` is the factors `u, u`; any
    /// other expression is one factor.
    pub fn of(e: Expr) -> Self {
        // Walks down the chain without recursion: it may be long.
        let mut rights = vec![];
        let mut sign = 1.0;
        let mut e = e;
        let innermost = loop {
            if let Some(c) = as_number(&e) {
                break Term::constant(c);
            }
            match e {
                Expr::Negative(u) => {
                    sign = -sign;
                    e = *u;
                }
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Multiply,
                    right,
                }) => {
                    if left == right {
                        let half = Term::number_or_factor(*left);
                        break half.product(&half);
                    }
                    rights.push(*right);
                    e = *left;
                }
                e => break Term::factor(e),
            }
        };
        rights
            .into_iter()
            .rev()
            .fold(innermost, |t, right| {
                t.product(&Term::number_or_factor(right))
            })
            .scaled(sign)
    }

    fn number_or_factor(e: Expr) -> Self {
        match as_number(&e) {
            Some(c) => Term::constant(c),
            None => Term::factor(e),
        }
    }

    fn scaled(mut self, c: f64) -> Self {
        self.coefficient *= c;
        self
    }

    /// `self · other`: coefficients multiply, `self`'s factors come first.
    fn product(&self, other: &Term) -> Term {
        Term {
            coefficient: self.coefficient * other.coefficient,
            factors: self.factors.iter().chain(&other.factors).cloned().collect(),
            divisors: self
                .divisors
                .iter()
                .chain(&other.divisors)
                .cloned()
                .collect(),
            size: self.size + other.size,
        }
    }

    /// `self / other`.
    fn quotient(&self, other: &Term) -> Term {
        Term {
            coefficient: self.coefficient / other.coefficient,
            factors: self
                .factors
                .iter()
                .chain(&other.divisors)
                .cloned()
                .collect(),
            divisors: self
                .divisors
                .iter()
                .chain(&other.factors)
                .cloned()
                .collect(),
            size: self.size + other.size,
        }
    }

    /// Whether `self` and `other` differ at most in their coefficients.
    fn is_like(&self, other: &Term) -> bool {
        self.size == other.size
            && same_multiset(&self.factors, &other.factors)
            && same_multiset(&self.divisors, &other.divisors)
    }

    /// The number of expression nodes the term is written with.
    fn nodes(&self) -> usize {
        let coefficient = usize::from(self.coefficient.abs() != 1.0 || self.factors.is_empty());
        let products = (self.factors.len() + coefficient).saturating_sub(1);
        // One division, and the products of the divisors.
        let division = self.divisors.len();
        self.size + coefficient + products + division
    }

    /// Whether the term is written negated when it comes first in a sum.
    fn is_negated(&self) -> bool {
        self.coefficient == -1.0 && !(self.factors.is_empty() && self.divisors.is_empty())
    }

    /// The term as an expression, when it comes first in a sum: a negative
    /// coefficient other than −1 is written as a negative literal rather than
    /// as a negation of the whole term, which would cost one more operation.
    fn expr(&self) -> Expr {
        if self.factors.is_empty() && self.divisors.is_empty() {
            lit(self.coefficient)
        } else if self.coefficient == -1.0 {
            negate(self.magnitude_expr())
        } else {
            self.signed_expr()
        }
    }

    /// The term with its coefficient as it is, sign included.
    fn signed_expr(&self) -> Expr {
        self.with_coefficient_literal(self.coefficient)
    }

    /// The term with the coefficient's magnitude: `factors · |coefficient| /
    /// divisors`, the coefficient after the factors so that a chain of
    /// factors taken from one product is written as that product was.
    fn magnitude_expr(&self) -> Expr {
        self.with_coefficient_literal(self.coefficient.abs())
    }

    /// `factors · coefficient / divisors`, the coefficient left out when it is 1.
    fn with_coefficient_literal(&self, magnitude: f64) -> Expr {
        let mut factors = self.factors.iter().cloned();
        let mut numerator = match factors.next() {
            Some(first) => factors.fold(first, |product, f| product * f),
            None => lit(magnitude),
        };
        if magnitude != 1.0 && !self.factors.is_empty() {
            numerator = numerator * lit(magnitude);
        }
        let mut divisors = self.divisors.iter().cloned();
        match divisors.next() {
            Some(first) => numerator / divisors.fold(first, |product, d| product * d),
            None => numerator,
        }
    }
}

/// Whether `a` and `b` hold the same expressions, counted with multiplicity.
fn same_multiset(a: &[Expr], b: &[Expr]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut unmatched: Vec<&Expr> = b.iter().collect();
    a.iter()
        .all(|x| match unmatched.iter().position(|y| *y == x) {
            Some(i) => {
                unmatched.swap_remove(i);
                true
            }
            None => false,
        })
}

impl Tangent {
    /// Wraps `expr`, read as a term (see [`Term::of`]); a literal zero is
    /// [`Tangent::Zero`].
    pub fn new(expr: Expr) -> Self {
        Tangent::from_terms(vec![Term::of(expr)])
    }

    /// The sum of `terms`, without those whose coefficient is zero.
    fn from_terms(mut terms: Vec<Term>) -> Self {
        terms.retain(|t| t.coefficient != 0.0);
        if terms.is_empty() {
            Tangent::Zero
        } else {
            Tangent::Sum(terms)
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Tangent::Zero)
    }

    /// The number of expression nodes the tangent is written with.
    pub fn nodes(&self) -> usize {
        match self {
            Tangent::Zero => 1,
            Tangent::Sum(terms) => {
                let negation = usize::from(terms[0].is_negated());
                terms.iter().map(Term::nodes).sum::<usize>() + terms.len() - 1 + negation
            }
        }
    }

    /// The tangent as an expression; zero becomes the literal `0.0`. Terms
    /// are added in order, a term with a negative coefficient subtracted.
    pub fn into_expr(self) -> Expr {
        let Tangent::Sum(terms) = self else {
            return lit(0.0_f64);
        };
        let mut terms = terms.iter();
        let first = terms.next().expect("a sum has a term").expr();
        terms.fold(first, |sum, t| match t.coefficient < 0.0 {
            true => sum - t.magnitude_expr(),
            false => sum + t.magnitude_expr(),
        })
    }

    /// The tangent as one term: itself if it has one, else the written-out
    /// sum as a factor.
    fn into_term(self) -> Option<Term> {
        match self {
            Tangent::Zero => None,
            Tangent::Sum(mut terms) if terms.len() == 1 => terms.pop(),
            sum => Some(Term::factor(sum.into_expr())),
        }
    }

    /// Every term scaled by the constant `c`.
    fn scaled(&self, c: f64) -> Tangent {
        match self {
            Tangent::Zero => Tangent::Zero,
            Tangent::Sum(terms) => {
                Tangent::from_terms(terms.iter().map(|t| t.clone().scaled(c)).collect())
            }
        }
    }

    /// `factor · self`: the chain rule's step through one partial derivative.
    pub fn times(&self, factor: Expr) -> Tangent {
        if self.is_zero() {
            return Tangent::Zero;
        }
        let factor = Term::of(factor);
        if factor.factors.is_empty() && factor.divisors.is_empty() {
            return self.scaled(factor.coefficient);
        }
        let Some(t) = self.clone().into_term() else {
            return Tangent::Zero;
        };
        // One factor goes after the tangent's, so that the chain rule's
        // product of one factor per level nests no deeper than its deepest
        // factor. A product of the primal goes first, written as the primal
        // writes it, so that its chain stays a common subexpression.
        let product = match factor.factors.len() {
            1 => t.product(&factor),
            _ => factor.product(&t),
        };
        Tangent::from_terms(vec![product])
    }

    /// `self / divisor`.
    pub fn over(&self, divisor: Expr) -> Tangent {
        if self.is_zero() {
            return Tangent::Zero;
        }
        let term = Term::of(divisor.clone());
        if term.coefficient == 0.0 || !term.coefficient.is_finite() {
            // Dividing by zero is left to the engine, as written.
            return self.quotient_by(Term::factor(divisor));
        }
        if term.factors.is_empty() && term.divisors.is_empty() {
            return self.scaled(1.0 / term.coefficient);
        }
        self.quotient_by(term)
    }

    fn quotient_by(&self, divisor: Term) -> Tangent {
        match self.clone().into_term() {
            Some(t) => Tangent::from_terms(vec![t.quotient(&divisor)]),
            None => Tangent::Zero,
        }
    }

    /// `self / factor` when every term holds `factor` among its factors: one
    /// copy is taken out of each term, so nothing is divided. `None` when a
    /// term lacks it.
    pub fn cancel_factor(&self, factor: &Expr) -> Option<Tangent> {
        let Tangent::Sum(terms) = self else {
            return Some(Tangent::Zero);
        };
        let size = nodes(factor);
        let terms = terms
            .iter()
            .map(|t| {
                let i = t.factors.iter().position(|f| f == factor)?;
                let mut t = t.clone();
                t.factors.remove(i);
                t.size -= size;
                Some(t)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Tangent::from_terms(terms))
    }

    /// `self + other`, like terms collected.
    pub fn plus(&self, other: &Tangent) -> Tangent {
        let (Tangent::Sum(a), Tangent::Sum(b)) = (self, other) else {
            return if self.is_zero() {
                other.clone()
            } else {
                self.clone()
            };
        };
        let mut terms = a.clone();
        for t in b {
            match terms.iter_mut().find(|s| s.is_like(t)) {
                Some(like) => like.coefficient += t.coefficient,
                None => terms.push(t.clone()),
            }
        }
        Tangent::from_terms(terms)
    }

    /// `self - other`.
    pub fn minus(&self, other: &Tangent) -> Tangent {
        self.plus(&other.neg())
    }

    /// `-self`.
    pub fn neg(&self) -> Tangent {
        self.scaled(-1.0)
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
    let case = Expr::Case(Case {
        expr: base,
        when_then_expr: branches
            .into_iter()
            .map(|(when, t)| (Box::new(when), Box::new(t.into_expr())))
            .collect(),
        else_expr: otherwise.map(|t| Box::new(t.into_expr())),
    });
    Tangent::from_terms(vec![Term::factor(case)])
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

/// `-e`, folding literals and double negation, also of a product's left
/// operand: `-((-a) * b)` is `a * b`.
pub fn negate(e: Expr) -> Expr {
    match e {
        Expr::Negative(inner) => *inner,
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Multiply,
            right,
        }) if matches!(*left, Expr::Negative(_)) => negate(*left) * *right,
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
mod tests;
