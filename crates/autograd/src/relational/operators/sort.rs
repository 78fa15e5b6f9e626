//! Sort: the same rows in another order, which a sum of contributions does
//! not see. With a LIMIT (`fetch`) the rows kept depend on the values
//! compared, which the reverse pass does not follow.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::LogicalPlan;

use super::alias;
use crate::relational::augment::{Augmented, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::{unsupported, Rule};

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward: alias::backward,
};

fn activity(_: &dyn Backprop, node: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    if let LogicalPlan::Sort(sort) = node {
        if sort.fetch.is_some() {
            return unsupported(node, "a LIMIT keeps rows by the values it sorts");
        }
    }
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
