//! Window functions over whole partitions: `SUM`, `AVG`, `MIN`, `MAX` and
//! `COUNT` are the aggregates' reductions per partition (see
//! [`crate::relational::reductions`]); the output row is its input row with
//! the window values added, so contributions also reach the input row
//! itself. Ranking and numbering functions, and the orderings and partitions
//! themselves, are piecewise constant in the values they compare: they pass
//! no derivative.

use std::rc::Rc;

use datafusion_common::{Column, Result, ScalarValue};
use datafusion_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion_expr::expr_rewriter::normalize_col;
use datafusion_expr::logical_plan::Window;
use datafusion_expr::{lit, Expr, LogicalPlanBuilder, WindowFrameBound, WindowFunctionDefinition};

use super::Op;
use crate::relational::augment::{selected, with_columns, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::reductions::{spread, Grouped, ReductionCall};
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::{reads_active, Substitution};

fn function(expr: &Expr) -> Option<&WindowFunction> {
    match expr {
        Expr::WindowFunction(f) => Some(f),
        Expr::Alias(a) => function(&a.expr),
        _ => None,
    }
}

/// The window function's call as a reduction, if it is an aggregate.
fn call<'a>(expr: &'a Expr, f: &'a WindowFunction) -> Option<ReductionCall<'a>> {
    match &f.fun {
        WindowFunctionDefinition::AggregateUDF(udaf) => Some(ReductionCall {
            expr,
            name: udaf.name(),
            args: &f.params.args,
            filter: f.params.filter.as_deref(),
            distinct: f.params.distinct,
        }),
        WindowFunctionDefinition::WindowUDF(_) => None,
    }
}

/// Whether the frame is the whole partition, whatever the ordering.
fn whole_partition(params: &WindowFunctionParams) -> bool {
    let frame = &params.window_frame;
    matches!(&frame.start_bound, WindowFrameBound::Preceding(v) if v.is_null())
        && matches!(&frame.end_bound, WindowFrameBound::Following(v) if v.is_null())
}

impl Op<'_, Window> {
    /// Whether the window value `expr` depends on a parameter, or an error if
    /// it does in a way the reverse pass does not follow.
    fn is_active(&self, expr: &Expr, reads: impl Fn(&Expr) -> bool) -> Result<bool> {
        let Some(f) = function(expr) else {
            return Ok(reads(expr));
        };
        let params = &f.params;
        if !params.args.iter().any(&reads) && !params.filter.as_deref().is_some_and(&reads) {
            return Ok(false);
        }
        let Some(call) = call(expr, f) else {
            return unsupported(
                self.node,
                format!("the window function in `{expr}` has no reverse rule"),
            );
        };
        if !call.reduction(self.node)?.is_differentiable() {
            return Ok(false);
        }
        if !whole_partition(params) {
            return unsupported(
                self.node,
                format!(
                    "`{expr}` reduces a running frame; only frames over the whole partition \
                     are differentiated"
                ),
            );
        }
        Ok(true)
    }
}

impl Rule for Op<'_, Window> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        let schema = self.op.input.schema();
        let active = &inputs[0];
        let mut out = active.to_vec();
        for e in &self.op.window_expr {
            out.push(self.is_active(e, |x| reads_active(x, schema, active))?);
        }
        Ok(out)
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let window = self.op;
        let input = bp.reduced_input(&window.input)?;
        let substitution = Substitution::new(window.input.schema(), &input.out);
        let width = input.out.len();
        let mut out = input.out.clone();
        let mut exprs = vec![];
        for (k, e) in window.window_expr.iter().enumerate() {
            let name = bp.out_name(self.node, width + k);
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
            layout: Layout::same_rows(input),
        })
    }

    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        let window = self.op;
        let Layout::Rows { inputs, .. } = &bar.aug.layout else {
            return datafusion_common::internal_err!("a window's rows are its input's");
        };
        let input = inputs[0].1.clone();
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
            let call = call(e, f).expect("active window values are reductions");
            let reduced = call.reduced(self.node, &substitution, cot)?;
            let keys = f
                .params
                .partition_by
                .iter()
                .map(|p| substitution.apply(p))
                .collect::<Result<Vec<_>>>()?;
            // The input's rows again: every row of a partition gets its share.
            let spread = spread(
                bp,
                input.clone(),
                &active,
                keys.clone(),
                Grouped {
                    bar: &bar,
                    keys,
                    passed: &[],
                },
                vec![reduced],
            )?;
            bars.extend(spread.bar);
        }
        Ok(merge(bp, bars)?.map(|b| vec![(0, b)]).unwrap_or_default())
    }
}

/// Several sets of contributions to one node's rows, as one: their union,
/// each row with no contribution (NULL) to the columns its set does not reach.
fn merge(bp: &dyn Backprop, bars: Vec<Bar>) -> Result<Option<Bar>> {
    let mut bars: Vec<Bar> = bars.into_iter().filter(Bar::reaches).collect();
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
                None => lit(ScalarValue::Float64(None)),
            };
            Some(value.alias(name.name.clone()))
        });
        let plan = LogicalPlanBuilder::from(bar.plan.clone())
            .project(with_columns(&aug.plan, extra))?
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
