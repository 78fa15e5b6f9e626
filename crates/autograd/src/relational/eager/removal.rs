//! The plan above the join that brought the parameter's rows in, computed
//! from the join's other side alone.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use datafusion_common::{Column, Result, ScalarValue};
use datafusion_expr::expr::BinaryExpr;
use datafusion_expr::logical_plan::{Filter, Join};
use datafusion_expr::utils::{conjunction, split_conjunction};
use datafusion_expr::{
    binary_expr as binary, lit, when, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
};

use super::joins::Fate;
use super::{contains, names, standing_alone};
use crate::relational::augment::join;

/// Taking the table's side away from the join `found` under a plan.
pub(super) struct Removal<'a> {
    pub(super) found: &'a Join,
    /// What stands in the join's place: its other side.
    pub(super) other: &'a LogicalPlan,
    /// The names of the columns of the side taken away.
    pub(super) side: HashSet<String>,
    /// The joins above `found` (see [`super::joins::Above`]).
    pub(super) joins: HashMap<*const Join, Fate>,
    /// The contributions' column.
    pub(super) cot: &'a str,
    /// Conditions on the side's columns alone that the contributions' column
    /// was NULL without, taken out of it (see [`hoisted`]): they hold or not
    /// for all the rows paired with one row of the side, and are applied once
    /// the sums are joined with it.
    pub(super) deferred: RefCell<Vec<Expr>>,
}

impl Removal<'_> {
    fn reads_side(&self, e: &Expr) -> bool {
        e.column_refs().iter().any(|c| self.side.contains(&c.name))
    }

    /// `plan` with the join replaced by its other side, keeping the columns
    /// `needed` of `plan`'s output; None unless every node between is a
    /// projection, a filter or an inner join, and nothing that `needed`
    /// depends on reads a column of the side taken away, so that every node
    /// above computes from the other side's rows what it computed before.
    pub(super) fn without(
        &self,
        plan: &LogicalPlan,
        needed: HashSet<String>,
    ) -> Result<Option<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(j) if std::ptr::eq(j, self.found) => {
                Ok((!needed.iter().any(|n| self.side.contains(n))).then(|| self.other.clone()))
            }
            LogicalPlan::Projection(p) => {
                let mut kept = vec![];
                for (e, f) in p.expr.iter().zip(p.schema.fields()) {
                    if !needed.contains(f.name()) {
                        continue;
                    }
                    if !self.reads_side(e) {
                        kept.push(e.clone());
                        continue;
                    }
                    if f.name() != self.cot {
                        return Ok(None);
                    }
                    let (inner, name) = match e {
                        Expr::Alias(alias) => (alias.expr.as_ref(), alias.name.clone()),
                        _ => return Ok(None),
                    };
                    let Some((inner, conditions)) = hoisted(inner, &self.side)? else {
                        return Ok(None);
                    };
                    if self.reads_side(&inner) {
                        return Ok(None);
                    }
                    self.deferred.borrow_mut().extend(conditions);
                    kept.push(inner.alias(name));
                }
                // A column this projection leaves out, read further up (a
                // reduction's group key compared with the table's side),
                // passed up from its input.
                let input_names = names(&p.input);
                for name in &needed {
                    if p.schema.field_with_unqualified_name(name).is_err() {
                        if !input_names.contains(name) || self.side.contains(name) {
                            return Ok(None);
                        }
                        kept.push(Expr::Column(Column::from_name(name.clone())));
                    }
                }
                if kept.len() < needed.len() {
                    return Ok(None);
                }
                let below = kept
                    .iter()
                    .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
                    .collect();
                let Some(input) = self.without(&p.input, below)? else {
                    return Ok(None);
                };
                LogicalPlanBuilder::from(input)
                    .project(kept)?
                    .build()
                    .map(Some)
            }
            LogicalPlan::Filter(f) => {
                if self.reads_side(&f.predicate) {
                    return Ok(None);
                }
                let mut below = needed;
                below.extend(
                    f.predicate
                        .column_refs()
                        .into_iter()
                        .map(|c| c.name.clone()),
                );
                let Some(input) = self.without(&f.input, below)? else {
                    return Ok(None);
                };
                Ok(Some(LogicalPlan::Filter(Filter::try_new(
                    f.predicate.clone(),
                    input.into(),
                )?)))
            }
            LogicalPlan::Join(j) => {
                let kept = match self.joins.get(&(j as *const Join)) {
                    Some(Fate::Kept(kept)) => Some(kept),
                    Some(Fate::Joins) => None,
                    None => return Ok(None),
                };
                if needed.iter().any(|n| self.side.contains(n)) {
                    return Ok(None);
                }
                let (through, beside, path) = if contains(&j.left, self.found) {
                    (j.left.as_ref(), j.right.as_ref(), 0)
                } else {
                    (j.right.as_ref(), j.left.as_ref(), 1)
                };
                let through_names = names(through);
                let beside_names = names(beside);
                if needed
                    .iter()
                    .any(|n| !through_names.contains(n) && !beside_names.contains(n))
                {
                    return Ok(None);
                }
                let mut below: HashSet<String> = needed
                    .into_iter()
                    .filter(|n| through_names.contains(n))
                    .collect();
                below.extend(
                    kept.iter()
                        .copied()
                        .flatten()
                        .flat_map(|e| e.column_refs())
                        .map(|c| c.name.clone())
                        .filter(|n| through_names.contains(n)),
                );
                let Some(through) = self.without(through, below)? else {
                    return Ok(None);
                };
                let Some(kept) = kept else {
                    // Taken into the table's side.
                    return Ok(Some(through));
                };
                let (left, right) = if path == 0 {
                    (through, beside.clone())
                } else {
                    (beside.clone(), through)
                };
                join(
                    standing_alone(left)?,
                    standing_alone(right)?,
                    vec![],
                    kept.clone(),
                    JoinType::Inner,
                    j.null_equality,
                )
                .map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// `expr` without the conditions on the columns `side` alone under which a
/// part of it is NULL, and those conditions: `expr` is NULL wherever one of
/// them fails and equals what is left wherever all hold. A reduction's
/// contribution is NULL for the rows it does not count — `CASE WHEN x.v *
/// w.w IS NOT NULL THEN … END`, where `x.v * w.w` is NULL exactly when one of
/// its operands is — and arithmetic is NULL where an operand is. None where
/// `expr` has another shape around a column of `side`.
fn hoisted(expr: &Expr, side: &HashSet<String>) -> Result<Option<(Expr, Vec<Expr>)>> {
    let reads_side = |e: &Expr| e.column_refs().iter().any(|c| side.contains(&c.name));
    if !reads_side(expr) {
        return Ok(Some((expr.clone(), vec![])));
    }
    Ok(match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if arithmetic(*op) => {
            let (Some((l, mut lc)), Some((r, rc))) = (hoisted(left, side)?, hoisted(right, side)?)
            else {
                return Ok(None);
            };
            lc.extend(rc);
            Some((binary(l, *op, r), lc))
        }
        Expr::Negative(inner) => {
            hoisted(inner, side)?.map(|(e, c)| (Expr::Negative(Box::new(e)), c))
        }
        Expr::Case(case)
            if case.expr.is_none()
                && case.when_then_expr.len() == 1
                && case.else_expr.as_deref().is_none_or(is_null) =>
        {
            let (condition, then) = &case.when_then_expr[0];
            let Some((then, mut conditions)) = hoisted(then, side)? else {
                return Ok(None);
            };
            let mut kept = vec![];
            for part in split_conjunction(condition)
                .into_iter()
                .flat_map(not_null_parts)
            {
                if part.column_refs().iter().all(|c| side.contains(&c.name)) {
                    conditions.push(part);
                } else if reads_side(&part) {
                    return Ok(None);
                } else {
                    kept.push(part);
                }
            }
            let expr = match conjunction(kept) {
                Some(condition) => {
                    when(condition, then).otherwise(lit(ScalarValue::Float64(None)))?
                }
                None => then,
            };
            Some((expr, conditions))
        }
        _ => None,
    })
}

/// `condition` as a conjunction: `a ⊙ b IS NOT NULL` for arithmetic ⊙ is `a
/// IS NOT NULL AND b IS NOT NULL`.
fn not_null_parts(condition: &Expr) -> Vec<Expr> {
    fn operands(e: &Expr, parts: &mut Vec<Expr>) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if arithmetic(*op) => {
                operands(left, parts);
                operands(right, parts);
            }
            Expr::Negative(inner) => operands(inner, parts),
            Expr::Literal(value, _) if !value.is_null() => {}
            e => parts.push(e.clone().is_not_null()),
        }
    }
    match condition {
        Expr::IsNotNull(inner) => {
            let mut parts = vec![];
            operands(inner, &mut parts);
            parts
        }
        other => vec![other.clone()],
    }
}

/// Whether `op` gives NULL exactly where an operand is NULL.
fn arithmetic(op: Operator) -> bool {
    matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide
    )
}

fn is_null(e: &Expr) -> bool {
    matches!(e, Expr::Literal(value, _) if value.is_null())
}
