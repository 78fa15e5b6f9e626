//! Truth values: the expressions whose derivative is zero because they only
//! ever take the values true, false and NULL.

use datafusion_expr::{Expr, Operator};

/// Whether `expr` yields a truth value.
pub fn is_condition(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryExpr(b) => is_truth_valued(b.op),
        Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Between(_)
        | Expr::Like(_)
        | Expr::SimilarTo(_)
        | Expr::InList(_)
        | Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::SetComparison(_) => true,
        _ => false,
    }
}

/// Comparisons and connectives yield truth values, which are piecewise
/// constant in their inputs.
pub fn is_truth_valued(op: Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Eq | NotEq
            | Lt
            | LtEq
            | Gt
            | GtEq
            | IsDistinctFrom
            | IsNotDistinctFrom
            | And
            | Or
            | RegexMatch
            | RegexIMatch
            | RegexNotMatch
            | RegexNotIMatch
            | LikeMatch
            | ILikeMatch
            | NotLikeMatch
            | NotILikeMatch
    )
}
