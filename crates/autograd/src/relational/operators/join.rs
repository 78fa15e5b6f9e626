//! Joins: each output row is a pair of input rows (inner, cross and outer
//! joins) or a row of one input (semi and anti joins), so a row's
//! contributions reach the rows it is made of, each side taking the
//! cotangents of its own columns. Keys and join conditions only decide which
//! rows pair up, which is piecewise constant in their values: they pass no
//! derivative. The rows an outer join pads with NULLs for a missing partner
//! have no partner to pass anything to.

use std::rc::Rc;

use datafusion_common::{DFSchema, Result};
use datafusion_expr::logical_plan::Join;
use datafusion_expr::{lit, Expr, JoinType};

use super::Op;
use crate::relational::augment::{self, extend, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::Rule;
use crate::relational::staged::computed_again;
use crate::relational::substitution::Substitution;

/// Which inputs' rows an output row holds, by position.
fn sides(join_type: JoinType) -> &'static [usize] {
    match join_type {
        JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => &[0, 1],
        JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => &[0],
        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => &[1],
    }
}

/// Whether input `k`'s columns are NULL in the output rows that have no row of it.
fn may_be_missing(join_type: JoinType, k: usize) -> bool {
    matches!(
        (join_type, k),
        (JoinType::Left, 1) | (JoinType::Right, 0) | (JoinType::Full, _)
    )
}

impl Rule for Op<'_, Join> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        let mut active: Vec<bool> = sides(self.op.join_type)
            .iter()
            .flat_map(|&k| inputs[k].iter().copied())
            .collect();
        // A mark join's extra column says whether a row matched: piecewise constant.
        active.resize(self.node.schema().fields().len(), false);
        Ok(active)
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let join = self.op;
        let left = bp.forward(&join.left)?;
        let mut right = bp.forward(&join.right)?;
        let names = |a: &Augmented| -> std::collections::HashSet<String> {
            a.plan
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        };
        if !names(&left).is_disjoint(&names(&right)) {
            right = bp.forward_apart(&join.right)?;
        }
        let inputs = [left, right];
        // Keys and conditions read both inputs' columns.
        let both = DFSchema::join(join.left.schema(), join.right.schema())?;
        let columns: Vec<_> = inputs.iter().flat_map(|a| a.out.iter().cloned()).collect();
        let substitution = Substitution::new(&both, &columns);
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
        let mut matched = [None, None];
        let mut plans = vec![];
        for (k, input) in inputs.iter().enumerate() {
            let plan = if may_be_missing(join.join_type, k) {
                let marker = bp.named(self.node, &format!("matched{k}"));
                let plan = extend(
                    input.plan.clone(),
                    vec![lit(true).alias(marker.name.clone())],
                )?;
                matched[k] = Some(marker);
                plan
            } else {
                input.plan.clone()
            };
            plans.push(plan);
        }
        let [left, right]: [_; 2] = plans.try_into().expect("two inputs");
        let plan = augment::join(left, right, on, filter, join.join_type, join.null_equality)?;
        let kept = sides(join.join_type);
        let mut out: Vec<_> = kept
            .iter()
            .flat_map(|&k| inputs[k].out.iter().cloned())
            .collect();
        // A mark join's extra column, under its own name.
        let plan = if out.len() < self.node.schema().fields().len() {
            let mark = bp.out_name(self.node, out.len());
            let shown = plan
                .schema()
                .fields()
                .last()
                .expect("a mark column")
                .name()
                .clone();
            out.push(mark.clone());
            extend(
                plan,
                vec![Expr::Column(datafusion_common::Column::from_name(shown)).alias(mark.name)],
            )?
        } else {
            plan
        };
        let [left, right]: [_; 2] = inputs;
        let all = [(0, left), (1, right)];
        let (inputs, matched): (Vec<_>, Vec<_>) = all
            .into_iter()
            .filter(|(k, _)| kept.contains(k))
            .map(|(k, a)| ((k, a), matched[k].clone()))
            .unzip();
        Ok(Augmented {
            plan,
            out,
            layout: Layout::Rows { inputs, matched },
        })
    }

    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        let Layout::Rows { inputs, matched } = &bar.aug.layout else {
            return datafusion_common::internal_err!("a join's rows hold its inputs' rows");
        };
        let mut start = 0;
        let mut reached = vec![];
        for ((k, input), marker) in inputs.iter().zip(matched) {
            let cot = bar.cot[start..start + input.out.len()].to_vec();
            start += input.out.len();
            if cot.iter().any(Option::is_some) {
                reached.push((*k, input.clone(), marker.clone(), cot));
            }
        }
        // Both sides read the contributions: kept, unless they are rows
        // computed from kept rows alone (a reduction's contributions joined
        // back onto its input), which each side computes again rather than
        // keep a relation as large as the input.
        let plan = if reached.len() == 2 && !computed_again(&bar.plan)? {
            bp.stage(bar.plan.clone())?
        } else {
            bar.plan.clone()
        };
        reached
            .into_iter()
            .map(|(k, input, marker, cot)| {
                let plan = match marker {
                    Some(marker) => datafusion_expr::LogicalPlanBuilder::from(plan.clone())
                        .filter(Expr::Column(marker).is_not_null())?
                        .build()?,
                    None => plan.clone(),
                };
                Ok((
                    k,
                    Bar {
                        plan,
                        aug: input,
                        cot,
                    },
                ))
            })
            .collect()
    }
}
