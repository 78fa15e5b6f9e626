//! Projection: each output row is computed from one input row, so a row's
//! contributions reach that input row through the derivatives of the
//! projected expressions: `cot(input col) = Σᵢ cot(outᵢ) · ∂eᵢ/∂col`, formed
//! by the scalar engine.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::marker::pullback;
use crate::relational::activity::reads_active;
use crate::relational::augment::{with_columns, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::Rule;
use crate::relational::substitution::Substitution;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn parts(node: &LogicalPlan) -> (&[Expr], &LogicalPlan) {
    match node {
        LogicalPlan::Projection(p) => (&p.expr, &p.input),
        _ => unreachable!("the projection rule is only called on projections"),
    }
}

fn activity(_: &dyn Backprop, node: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    let (exprs, input) = parts(node);
    Ok(exprs
        .iter()
        .map(|e| reads_active(e, input.schema(), &inputs[0]))
        .collect())
}

/// The projected expressions over the input's augmented plan.
fn projected(node: &LogicalPlan, input: &Augmented) -> Result<Vec<Expr>> {
    let (exprs, input_node) = parts(node);
    let substitution = Substitution::new(input_node.schema(), &input.out);
    exprs
        .iter()
        .map(|e| substitution.apply(&e.clone().unalias()))
        .collect()
}

fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let (_, input_node) = parts(node);
    let input = bp.forward(input_node)?;
    let out: Vec<_> = (0..node.schema().fields().len())
        .map(|j| bp.out_name(node, j))
        .collect();
    let exprs = projected(node, &input)?
        .into_iter()
        .zip(&out)
        .map(|(e, name)| e.alias(name.name.clone()));
    let plan = LogicalPlanBuilder::from(input.plan.clone())
        .project(with_columns(&input.plan, exprs))?
        .build()?;
    Ok(Augmented {
        plan,
        out,
        layout: Layout::Rows(vec![input]),
    })
}

fn backward(bp: &dyn Backprop, node: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let (_, input_node) = parts(node);
    let Layout::Rows(inputs) = &bar.aug.layout else {
        unreachable!("a projection's rows are its input's")
    };
    let input = inputs[0].clone();
    let active = bp.active(input_node)?;
    let exprs = projected(node, &input)?;
    let mut cot = vec![None; input.out.len()];
    let mut added = vec![];
    for (j, column) in input.out.iter().enumerate().filter(|(j, _)| active[*j]) {
        let mut terms = vec![];
        for (e, c) in exprs.iter().zip(&bar.cot) {
            let Some(c) = c else { continue };
            if let Some(term) = pullback(
                e,
                column,
                Expr::Column(c.clone()),
                bar.plan.schema(),
                bp.options(),
            )? {
                terms.push(term);
            }
        }
        if let Some(sum) = terms.into_iter().reduce(|a, b| a + b) {
            let name = bp.fresh("d");
            added.push(sum.alias(name.name.clone()));
            cot[j] = Some(name);
        }
    }
    if added.is_empty() {
        return Ok(vec![]);
    }
    let plan = LogicalPlanBuilder::from(bar.plan.clone())
        .project(with_columns(&bar.plan, added))?
        .build()?;
    Ok(vec![(
        0,
        Bar {
            plan,
            aug: input,
            cot,
        },
    )])
}
