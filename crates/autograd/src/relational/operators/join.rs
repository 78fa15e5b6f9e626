//! Inner and cross joins: each output row is a pair of input rows, so a
//! row's contributions reach both, each side taking the cotangents of its own
//! columns. Keys and join conditions only decide which rows pair up, which is
//! piecewise constant in their values: they pass no derivative.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::logical_plan::Join;
use datafusion_expr::{JoinType, LogicalPlan};

use crate::relational::activity::concat;
use crate::relational::augment::{self, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::Substitution;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn join(node: &LogicalPlan) -> &Join {
    match node {
        LogicalPlan::Join(join) => join,
        _ => unreachable!("the join rule is only called on joins"),
    }
}

fn activity(_: &dyn Backprop, node: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    let join = join(node);
    if join.join_type != JoinType::Inner {
        return unsupported(
            node,
            format!(
                "a {} join adds or drops rows by whether they match",
                join.join_type
            ),
        );
    }
    let active = concat(inputs);
    Ok(active)
}

fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let join = join(node);
    let left = bp.forward(&join.left)?;
    let right = bp.forward(&join.right)?;
    let out: Vec<_> = left.out.iter().chain(&right.out).cloned().collect();
    let substitution = Substitution::new(node.schema(), &out);
    let on = join
        .on
        .iter()
        .map(|(l, r)| Ok((substitution.apply(l)?, substitution.apply(r)?)))
        .collect::<Result<Vec<_>>>()?;
    let filter = join
        .filter
        .as_ref()
        .map(|f| substitution.apply(f))
        .transpose()?;
    let plan = augment::join(
        left.plan.clone(),
        right.plan.clone(),
        on,
        filter,
        JoinType::Inner,
        join.null_equality,
    )?;
    Ok(Augmented {
        plan,
        out,
        layout: Layout::Rows(vec![left, right]),
    })
}

fn backward(bp: &dyn Backprop, _: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let Layout::Rows(inputs) = &bar.aug.layout else {
        unreachable!("a join's rows hold both inputs' rows")
    };
    let (left, right) = (&inputs[0], &inputs[1]);
    let (left_cot, right_cot) = bar.cot.split_at(left.out.len());
    let sides: Vec<_> = [(0, left, left_cot), (1, right, right_cot)]
        .into_iter()
        .filter(|(_, _, cot)| cot.iter().any(Option::is_some))
        .collect();
    // Both sides read the contributions: kept.
    let plan = match sides.len() {
        2 => bp.stage(bar.plan.clone())?,
        _ => bar.plan.clone(),
    };
    Ok(sides
        .into_iter()
        .map(|(k, input, cot)| {
            (
                k,
                Bar {
                    plan: plan.clone(),
                    aug: input.clone(),
                    cot: cot.to_vec(),
                },
            )
        })
        .collect())
}
