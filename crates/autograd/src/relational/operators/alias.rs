//! Subquery alias (also how CTEs and views appear in a plan): the same rows
//! under another name. Augmented plans name their columns themselves, so the
//! alias changes nothing in them.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::LogicalPlan;

use crate::relational::augment::{Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::Rule;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn activity(_: &dyn Backprop, _: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    Ok(inputs[0].to_vec())
}

fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let input = bp.forward(node.inputs()[0])?;
    Ok(Augmented {
        plan: input.plan.clone(),
        out: input.out.clone(),
        layout: Layout::Rows(vec![input]),
    })
}

pub(super) fn backward(_: &dyn Backprop, _: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let Layout::Rows(inputs) = &bar.aug.layout else {
        unreachable!("an alias's rows are its input's")
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
