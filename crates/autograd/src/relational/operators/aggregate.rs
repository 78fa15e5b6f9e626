//! Aggregate (`GROUP BY`, or one group without it): each output row stands
//! for a group of input rows; see [`crate::relational::reductions`] for how
//! its cotangent reaches them. Which rows form a group is piecewise constant
//! in the keys, like a condition; a key's value, shared by its group's rows,
//! is differentiable like any output.

use std::rc::Rc;

use datafusion_common::{Column, Result};
use datafusion_expr::expr::AggregateFunction;
use datafusion_expr::logical_plan::Aggregate;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::relational::activity::reads_active;
use crate::relational::augment::{selected, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::reductions::{spread, Reduced, Reduction};
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::Substitution;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn aggregate(node: &LogicalPlan) -> &Aggregate {
    match node {
        LogicalPlan::Aggregate(a) => a,
        _ => unreachable!("the aggregate rule is only called on aggregates"),
    }
}

/// The aggregate function call inside an output expression.
fn call(expr: &Expr) -> Option<&AggregateFunction> {
    match expr {
        Expr::AggregateFunction(f) => Some(f),
        Expr::Alias(a) => call(&a.expr),
        _ => None,
    }
}

fn activity(_: &dyn Backprop, node: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    let agg = aggregate(node);
    let schema = agg.input.schema();
    let active = &inputs[0];
    let mut out = vec![];
    for g in &agg.group_expr {
        let reads = reads_active(g, schema, active);
        if reads && matches!(g, Expr::GroupingSet(_)) {
            return unsupported(node, "grouping sets are not differentiated");
        }
        out.push(reads);
    }
    for e in &agg.aggr_expr {
        if !reads_active(e, schema, active) {
            out.push(false);
            continue;
        }
        let reduction = reduction_of(node, e)?;
        out.push(reduction.is_differentiable());
    }
    Ok(out)
}

/// The reduction `expr` performs, if the reverse pass knows it.
fn reduction_of(node: &LogicalPlan, expr: &Expr) -> Result<Reduction> {
    let Some(f) = call(expr) else {
        return unsupported(node, format!("`{expr}` is not an aggregate function call"));
    };
    let name = f.func.name();
    let Some(reduction) = Reduction::of(name) else {
        return unsupported(
            node,
            format!("the aggregate function `{name}` has no reverse rule"),
        );
    };
    if f.params.distinct && reduction.is_differentiable() {
        return unsupported(node, format!("`{expr}` reduces DISTINCT values"));
    }
    if f.params.args.len() != 1 && reduction.is_differentiable() {
        return unsupported(
            node,
            format!("`{expr}` takes {} arguments", f.params.args.len()),
        );
    }
    Ok(reduction)
}

/// The aggregate over its input's augmented plan, which is kept: the reverse
/// rule reads it again.
fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let agg = aggregate(node);
    let input = bp.reduced_input(&agg.input)?;
    let substitution = Substitution::new(agg.input.schema(), &input.out);
    let out: Vec<_> = (0..node.schema().fields().len())
        .map(|j| bp.out_name(node, j))
        .collect();
    let (group_names, aggr_names) = out.split_at(agg.group_expr.len());
    let named = |exprs: &[Expr], names: &[Column]| {
        exprs
            .iter()
            .zip(names)
            .map(|(e, n)| {
                Ok(substitution
                    .apply(&e.clone().unalias())?
                    .alias(n.name.clone()))
            })
            .collect::<Result<Vec<_>>>()
    };
    let plan = LogicalPlanBuilder::from(input.plan.clone())
        .aggregate(
            named(&agg.group_expr, group_names)?,
            named(&agg.aggr_expr, aggr_names)?,
        )?
        .build()?;
    Ok(Augmented {
        plan: selected(plan)?,
        out,
        layout: Layout::Groups,
    })
}

fn backward(bp: &dyn Backprop, node: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let agg = aggregate(node);
    let input = bp.reduced_input(&agg.input)?;
    let substitution = Substitution::new(agg.input.schema(), &input.out);
    let groups = agg.group_expr.len();
    let mut reduced = vec![];
    for (g, key) in agg.group_expr.iter().enumerate() {
        if let Some(cot) = bar.cot[g].clone() {
            reduced.push(Reduced {
                reduction: Reduction::Key,
                arg: substitution.apply(&key.clone().unalias())?,
                filter: None,
                cot,
                value: bar.aug.out[g].clone(),
            });
        }
    }
    for (i, e) in agg.aggr_expr.iter().enumerate() {
        let Some(cot) = bar.cot[groups + i].clone() else {
            continue;
        };
        let f = call(e).expect("active aggregates are function calls");
        reduced.push(Reduced {
            reduction: reduction_of(node, e)?,
            arg: substitution.apply(&f.params.args[0])?,
            filter: f
                .params
                .filter
                .as_deref()
                .map(|filter| substitution.apply(filter))
                .transpose()?,
            cot,
            value: bar.aug.out[groups + i].clone(),
        });
    }
    let input_keys = agg
        .group_expr
        .iter()
        .map(|g| substitution.apply(&g.clone().unalias()))
        .collect::<Result<Vec<_>>>()?;
    let bar_keys = bar.aug.out[..groups]
        .iter()
        .cloned()
        .map(Expr::Column)
        .collect();
    let active = bp.active(&agg.input)?;
    Ok(
        spread(bp, input, &active, input_keys, &bar, bar_keys, reduced)?
            .map(|input_bar| vec![(0, input_bar)])
            .unwrap_or_default(),
    )
}
