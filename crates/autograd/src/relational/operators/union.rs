//! UNION ALL: each output row is a row of one input. The augmented plan tags
//! each row with its input, so contributions go back to the input they came
//! from.

use std::rc::Rc;

use datafusion_common::{Column, Result, ScalarValue};
use datafusion_expr::logical_plan::Union;
use datafusion_expr::{lit, Expr, LogicalPlanBuilder};

use super::Op;
use crate::relational::augment::{Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::Rule;

impl Rule for Op<'_, Union> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        Ok((0..self.node.schema().fields().len())
            .map(|j| inputs.iter().any(|a| a[j]))
            .collect())
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let inputs = self
            .op
            .inputs
            .iter()
            .map(|input| bp.forward(input))
            .collect::<Result<Vec<_>>>()?;
        let out = bp.out_names(self.node);
        let tag = bp.named(self.node, "tag");
        // Input k's columns live in their own columns here, NULL in other inputs' rows.
        let columns: Vec<Vec<_>> = inputs
            .iter()
            .enumerate()
            .map(|(k, input)| {
                (0..input.plan.schema().fields().len())
                    .map(|c| bp.named(self.node, &format!("in{k}_{c}")))
                    .collect()
            })
            .collect();
        let mut union: Option<LogicalPlanBuilder> = None;
        for (k, input) in inputs.iter().enumerate() {
            let mut exprs: Vec<Expr> = input
                .out
                .iter()
                .zip(&out)
                .map(|(c, name)| Expr::Column(c.clone()).alias(name.name.clone()))
                .collect();
            exprs.push(lit(k as i64).alias(tag.name.clone()));
            for (m, other) in inputs.iter().enumerate() {
                for (field, name) in other.plan.schema().fields().iter().zip(&columns[m]) {
                    let value = if m == k {
                        Expr::Column(Column::from_name(field.name().clone()))
                    } else {
                        lit(ScalarValue::try_from(field.data_type())?)
                    };
                    exprs.push(value.alias(name.name.clone()));
                }
            }
            let branch = LogicalPlanBuilder::from(input.plan.clone())
                .project(exprs)?
                .build()?;
            union = Some(match union {
                None => LogicalPlanBuilder::from(branch),
                Some(union) => union.union(branch)?,
            });
        }
        Ok(Augmented {
            plan: union.expect("a union has inputs").build()?,
            out,
            layout: Layout::Branches {
                tag,
                inputs: inputs.into_iter().zip(columns).collect(),
            },
        })
    }

    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        let Layout::Branches { tag, inputs } = &bar.aug.layout else {
            return datafusion_common::internal_err!("a union's rows are tagged with their input");
        };
        let active = self
            .op
            .inputs
            .iter()
            .map(|input| Ok(bp.active(input)?.iter().any(|a| *a)))
            .collect::<Result<Vec<bool>>>()?;
        // Every active input reads the contributions: kept when there are several.
        let plan = match active.iter().filter(|a| **a).count() {
            0 | 1 => bar.plan.clone(),
            _ => bp.stage(bar.plan.clone())?,
        };
        let mut bars = vec![];
        for (k, (input, columns)) in inputs.iter().enumerate().filter(|(k, _)| active[*k]) {
            let mut exprs: Vec<Expr> = input
                .plan
                .schema()
                .fields()
                .iter()
                .zip(columns)
                .map(|(field, here)| {
                    Expr::Column(Column::from_name(here.name.clone())).alias(field.name().clone())
                })
                .collect();
            exprs.extend(bar.cot.iter().flatten().map(|c| Expr::Column(c.clone())));
            let plan = LogicalPlanBuilder::from(plan.clone())
                .filter(Expr::Column(tag.clone()).eq(lit(k as i64)))?
                .project(exprs)?
                .build()?;
            bars.push((
                k,
                Bar {
                    plan,
                    aug: input.clone(),
                    cot: bar.cot.clone(),
                },
            ));
        }
        Ok(bars)
    }
}
