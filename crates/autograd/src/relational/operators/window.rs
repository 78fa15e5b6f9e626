//! Window functions: each output row is an input row with the window values
//! of its partition appended. A row's contributions reach its input row as
//! they are, and each window value's contributions reach every row of its
//! partition as a reduction's do (see [`crate::relational::reductions`]).
//! Only frames that span the whole partition are differentiated: a running
//! frame would reduce different rows for each row.

use std::rc::Rc;

use datafusion_common::{Column, Result};
use datafusion_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion_expr::expr_rewriter::normalize_col;
use datafusion_expr::logical_plan::Window;
use datafusion_expr::{
    lit, Expr, LogicalPlan, LogicalPlanBuilder, WindowFrameBound, WindowFunctionDefinition,
};

use crate::relational::activity::reads_active;
use crate::relational::augment::{selected, with_columns, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::reductions::{spread, Reduced, Reduction};
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::Substitution;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn window(node: &LogicalPlan) -> &Window {
    match node {
        LogicalPlan::Window(w) => w,
        _ => unreachable!("the window rule is only called on windows"),
    }
}

fn function(expr: &Expr) -> Option<&WindowFunction> {
    match expr {
        Expr::WindowFunction(f) => Some(f),
        Expr::Alias(a) => function(&a.expr),
        _ => None,
    }
}

/// Whether the frame is the whole partition, whatever the ordering.
fn whole_partition(params: &WindowFunctionParams) -> bool {
    let frame = &params.window_frame;
    matches!(&frame.start_bound, WindowFrameBound::Preceding(v) if v.is_null())
        && matches!(&frame.end_bound, WindowFrameBound::Following(v) if v.is_null())
}

fn activity(_: &dyn Backprop, node: &LogicalPlan, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    let window = window(node);
    let schema = window.input.schema();
    let active = &inputs[0];
    let mut out = active.to_vec();
    for e in &window.window_expr {
        out.push(is_active(node, e, |x| reads_active(x, schema, active))?);
    }
    Ok(out)
}

/// Whether the window value `expr` depends on the parameter, or an error if
/// it does in a way the reverse pass does not follow.
fn is_active(node: &LogicalPlan, expr: &Expr, reads: impl Fn(&Expr) -> bool) -> Result<bool> {
    let Some(f) = function(expr) else {
        return Ok(reads(expr));
    };
    let params = &f.params;
    // Partitions, like groups, are piecewise constant in their keys.
    if !params.args.iter().any(&reads) && !params.filter.as_deref().is_some_and(&reads) {
        // Ranks and the like, or orderings of the parameter: piecewise constant.
        return Ok(false);
    }
    let reduction = match &f.fun {
        WindowFunctionDefinition::AggregateUDF(udaf) => Reduction::of(udaf.name()),
        WindowFunctionDefinition::WindowUDF(_) => None,
    };
    let Some(reduction) = reduction else {
        return unsupported(
            node,
            format!("the window function in `{expr}` has no reverse rule"),
        );
    };
    if !reduction.is_differentiable() {
        return Ok(false);
    }
    if !whole_partition(params) {
        return unsupported(
            node,
            format!(
                "`{expr}` reduces a running frame; only frames over the whole partition are \
                 differentiated"
            ),
        );
    }
    if params.distinct || params.args.len() != 1 {
        return unsupported(node, format!("`{expr}` is not a reduction of one argument"));
    }
    Ok(true)
}

fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let window = window(node);
    let input = bp.reduced_input(&window.input)?;
    let substitution = Substitution::new(window.input.schema(), &input.out);
    let width = input.out.len();
    let mut out = input.out.clone();
    let mut exprs = vec![];
    for (k, e) in window.window_expr.iter().enumerate() {
        let name = bp.out_name(node, width + k);
        // Qualified as the input names them, so that the planner finds every
        // partition key where it computed it.
        let expr = normalize_col(substitution.apply(&e.clone().unalias())?, &input.plan)?;
        exprs.push(expr.alias(name.name.clone()));
        out.push(name);
    }
    let plan = selected(
        LogicalPlanBuilder::from(input.plan.clone())
            .window(exprs)?
            .build()?,
    )?;
    Ok(Augmented {
        plan,
        out,
        layout: Layout::Rows(vec![input]),
    })
}

fn backward(bp: &dyn Backprop, node: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let window = window(node);
    let Layout::Rows(inputs) = &bar.aug.layout else {
        unreachable!("a window's rows are its input's")
    };
    let input = inputs[0].clone();
    let width = input.out.len();
    let active = bp.active(&window.input)?;
    let substitution = Substitution::new(window.input.schema(), &input.out);
    // Read once row by row and once per window value: kept.
    let bar = Bar {
        plan: bp.stage(bar.plan)?,
        ..bar
    };
    // The input columns' own contributions, row by row.
    let mut bars = vec![Bar {
        plan: bar.plan.clone(),
        aug: input.clone(),
        cot: bar.cot[..width].to_vec(),
    }];
    for (k, e) in window.window_expr.iter().enumerate() {
        let Some(cot) = bar.cot[width + k].clone() else {
            continue;
        };
        let f = function(e).expect("active window values are function calls");
        let WindowFunctionDefinition::AggregateUDF(udaf) = &f.fun else {
            unreachable!("active window values are reductions")
        };
        let keys = f
            .params
            .partition_by
            .iter()
            .map(|p| substitution.apply(p))
            .collect::<Result<Vec<_>>>()?;
        let reduced = Reduced {
            reduction: Reduction::of(udaf.name()).expect("checked by activity"),
            arg: substitution.apply(&f.params.args[0])?,
            filter: f
                .params
                .filter
                .as_deref()
                .map(|filter| substitution.apply(filter))
                .transpose()?,
            cot,
            value: bar.aug.out[width + k].clone(),
        };
        // The input's rows again: every row of a partition gets its share.
        let rows = bp.reduced_input(&window.input)?;
        if let Some(spread) = spread(bp, rows, &active, keys.clone(), &bar, keys, vec![reduced])? {
            bars.push(spread);
        }
    }
    Ok(merge(bp, bars)?.map(|b| vec![(0, b)]).unwrap_or_default())
}

/// Several sets of contributions to one node's rows, as one.
fn merge(bp: &dyn Backprop, bars: Vec<Bar>) -> Result<Option<Bar>> {
    let mut bars: Vec<Bar> = bars
        .into_iter()
        .filter(|b| b.cot.iter().any(Option::is_some))
        .collect();
    if bars.len() <= 1 {
        return Ok(bars.pop());
    }
    let aug = bars[0].aug.clone();
    let cot: Vec<Option<Column>> = (0..aug.out.len())
        .map(|j| {
            bars.iter()
                .any(|b| b.cot[j].is_some())
                .then(|| bp.fresh("d"))
        })
        .collect();
    let mut union: Option<LogicalPlanBuilder> = None;
    for bar in &bars {
        let extra = cot.iter().enumerate().filter_map(|(j, name)| {
            let name = name.as_ref()?;
            let value = match &bar.cot[j] {
                Some(c) => Expr::Column(c.clone()),
                None => lit(0.0_f64),
            };
            Some(value.alias(name.name.clone()))
        });
        let exprs = with_columns(&aug.plan, extra);
        let plan = LogicalPlanBuilder::from(bar.plan.clone())
            .project(exprs)?
            .build()?;
        union = Some(match union {
            None => LogicalPlanBuilder::from(plan),
            Some(union) => union.union(plan)?,
        });
    }
    Ok(Some(Bar {
        plan: union.expect("at least two").build()?,
        aug,
        cot,
    }))
}
