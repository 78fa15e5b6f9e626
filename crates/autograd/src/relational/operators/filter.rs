//! Filter: a row's contributions reach the input row it is.
//!
//! The predicate only selects rows; it is piecewise constant in the values it
//! compares, so it passes no derivative of its own.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::relational::augment::{Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::Substitution;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn activity(_: &dyn Backprop, _: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    Ok(inputs[0].to_vec())
}

fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let LogicalPlan::Filter(filter) = node else {
        unreachable!("the filter rule is only called on filters")
    };
    if filter.predicate.contains_outer() || has_correlated_subquery(&filter.predicate) {
        return unsupported(node, "its condition is a correlated subquery");
    }
    let input = bp.forward(&filter.input)?;
    let predicate =
        Substitution::new(filter.input.schema(), &input.out).apply(&filter.predicate)?;
    let plan = LogicalPlanBuilder::from(input.plan.clone())
        .filter(predicate)?
        .build()?;
    Ok(Augmented {
        plan,
        out: input.out.clone(),
        layout: Layout::Rows(vec![input]),
    })
}

fn backward(_: &dyn Backprop, _: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let Layout::Rows(inputs) = &bar.aug.layout else {
        unreachable!("a filter's rows are its input's")
    };
    let input = inputs[0].clone();
    Ok(vec![(
        0,
        Bar {
            plan: bar.plan,
            aug: input,
            cot: bar.cot,
        },
    )])
}

fn has_correlated_subquery(expr: &datafusion_expr::Expr) -> bool {
    use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion_expr::Expr;
    let mut found = false;
    let _ = expr.apply(|e| {
        let outer = match e {
            Expr::ScalarSubquery(s) => !s.outer_ref_columns.is_empty(),
            Expr::Exists(e) => !e.subquery.outer_ref_columns.is_empty(),
            Expr::InSubquery(i) => !i.subquery.outer_ref_columns.is_empty(),
            _ => false,
        };
        found |= outer;
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}
