//! Cotangents through expressions: what the rules of row-by-row operators
//! and reductions share.

use datafusion_common::{Column, DFSchema, Result};
use datafusion_expr::{lit, Expr};

use super::augment::Augmented;
use super::backprop::Backprop;
use crate::forward::marker::pullback;

/// Contributions to an input's columns from expressions over its augmented
/// plan, each with the cotangent it receives: per active column `c` of
/// `input`, `Σₖ cotangentₖ · ∂exprₖ/∂c`, formed by the scalar engine over
/// `schema` (the relation the expressions are evaluated in).
///
/// Returns, per output column of the input, the column its contribution
/// will be in, and the expressions that compute them.
pub(crate) fn pull_back(
    bp: &dyn Backprop,
    input: &Augmented,
    active: &[bool],
    exprs: &[(Expr, Expr)],
    schema: &DFSchema,
) -> Result<(Vec<Option<Column>>, Vec<Expr>)> {
    let mut cot = vec![None; input.out.len()];
    let mut added = vec![];
    for (j, column) in input.out.iter().enumerate().filter(|(j, _)| active[*j]) {
        let mut terms = vec![];
        for (expr, cotangent) in exprs {
            if let Some(term) = pullback(expr, column, cotangent.clone(), schema, bp.options())? {
                terms.push(term);
            }
        }
        if terms.is_empty() {
            continue;
        }
        let name = bp.fresh("d");
        added.push(present_sum(terms).alias(name.name.clone()));
        cot[j] = Some(name);
    }
    Ok((cot, added))
}

/// The sum of the contributions that are present (not NULL), or NULL where
/// none is: a NULL contribution is no contribution.
pub(crate) fn present_sum(mut terms: Vec<Expr>) -> Expr {
    if terms.len() == 1 {
        return terms.remove(0);
    }
    let none = terms
        .iter()
        .map(|t| t.clone().is_null())
        .reduce(Expr::and)
        .expect("at least two terms");
    let sum = terms
        .into_iter()
        .map(|t| datafusion::functions::expr_fn::coalesce(vec![t, lit(0.0_f64)]))
        .reduce(|a, b| a + b)
        .expect("at least two terms");
    datafusion_expr::when(none, lit(datafusion_common::ScalarValue::Float64(None)))
        .otherwise(sum)
        .expect("a CASE with a branch")
}
