//! Reductions: how an aggregate's value, per group or per window partition,
//! passes its cotangent to the rows it reduced.
//!
//! | reduction | ∂value/∂(a row's argument) |
//! | --- | --- |
//! | `SUM` | 1 |
//! | `AVG` | 1 / (rows counted) |
//! | `MIN`, `MAX` | 1 / (rows attaining it) for rows attaining it, else 0 |
//! | `COUNT` | 0 |
//! | a `GROUP BY` key | 1 / (rows in the group) |
//!
//! A group key's value is the value every row of its group holds, so its
//! cotangent is shared among them. Rows whose argument is NULL, or that a
//! `FILTER` drops, are not reduced and get nothing. Ties at an extremum share its cotangent equally (the value is
//! not differentiable there; this is the choice JAX makes).

use datafusion::functions_aggregate::expr_fn::{max, sum};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion_common::{Column, NullEquality, Result};
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::{lit, when, Expr, ExprFunctionExt, JoinType, LogicalPlanBuilder};

use super::augment::{join, selected, with_columns, Augmented, Bar};
use super::backprop::Backprop;
use crate::marker::pullback;

/// The reductions the reverse pass knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduction {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    /// The value a `GROUP BY` key takes in every row of its group.
    Key,
}

impl Reduction {
    /// The reduction an aggregate function called `name` performs.
    pub fn of(name: &str) -> Option<Self> {
        match name {
            "sum" => Some(Reduction::Sum),
            "avg" | "mean" => Some(Reduction::Avg),
            "min" => Some(Reduction::Min),
            "max" => Some(Reduction::Max),
            "count" => Some(Reduction::Count),
            _ => None,
        }
    }

    /// Whether its value changes with the values reduced.
    pub fn is_differentiable(self) -> bool {
        self != Reduction::Count
    }
}

/// One reduction whose value has contributions.
pub(crate) struct Reduced {
    pub reduction: Reduction,
    /// The argument, over the input's augmented plan.
    pub arg: Expr,
    /// Which rows are reduced (`FILTER (WHERE …)`), over the input's augmented plan.
    pub filter: Option<Expr>,
    /// The contributions' column in the reducing node's contributions.
    pub cot: Column,
    /// The reduction's value in the reducing node's contributions.
    pub value: Column,
}

/// Contributions to the input's rows from contributions to the reductions.
///
/// `input` is the input's augmented plan and `input_keys` the group (or
/// partition) key over it; `bar` holds the reducing node's contributions,
/// whose group key is `bar_keys`. Contributions are summed per group, joined
/// back onto every input row of the group, and taken through each argument's
/// derivative.
pub(crate) fn spread(
    bp: &dyn Backprop,
    input: Augmented,
    input_active: &[bool],
    input_keys: Vec<Expr>,
    bar: &Bar,
    bar_keys: Vec<Expr>,
    reduced: Vec<Reduced>,
) -> Result<Option<Bar>> {
    // Per group: the summed contributions and, for extrema, the value.
    let keys: Vec<Column> = bar_keys.iter().map(|_| bp.fresh("key")).collect();
    let mut aggregates = vec![];
    let mut totals = vec![];
    let mut values = vec![];
    for r in &reduced {
        let total = bp.fresh("total");
        aggregates.push(sum(Expr::Column(r.cot.clone())).alias(total.name.clone()));
        totals.push(total);
        let value = bp.fresh("value");
        if matches!(r.reduction, Reduction::Min | Reduction::Max) {
            aggregates.push(max(Expr::Column(r.value.clone())).alias(value.name.clone()));
        }
        values.push(value);
    }
    let groups = LogicalPlanBuilder::from(bar.plan.clone())
        .aggregate(
            bar_keys
                .into_iter()
                .zip(&keys)
                .map(|(e, k)| e.alias(k.name.clone())),
            aggregates,
        )?
        .build()?;
    let groups = selected(groups)?;

    let on = input_keys
        .into_iter()
        .zip(&keys)
        .map(|(e, k)| (e, Expr::Column(k.clone())))
        .collect();
    let joined = join(
        input.plan.clone(),
        groups,
        on,
        None,
        JoinType::Inner,
        NullEquality::NullEqualsNull,
    )?;

    // Per group, over the input rows: how many are counted, how many tie.
    let partition: Vec<Expr> = keys.iter().cloned().map(Expr::Column).collect();
    let mut windows = vec![];
    let mut shares = vec![];
    for ((r, total), value) in reduced.iter().zip(&totals).zip(&values) {
        let counted = match &r.filter {
            Some(f) => f.clone().and(r.arg.clone().is_not_null()),
            None => r.arg.clone().is_not_null(),
        };
        let (rows, share) = match r.reduction {
            Reduction::Sum => (counted, Expr::Column(total.clone())),
            Reduction::Key => {
                let n = bp.fresh("count");
                windows.push(window_sum(&lit(true), &partition)?.alias(n.name.clone()));
                (lit(true), Expr::Column(total.clone()) / Expr::Column(n))
            }
            Reduction::Avg => {
                let n = bp.fresh("count");
                windows.push(window_sum(&counted, &partition)?.alias(n.name.clone()));
                (counted, Expr::Column(total.clone()) / Expr::Column(n))
            }
            Reduction::Min | Reduction::Max => {
                let attains = counted.and(r.arg.clone().eq(Expr::Column(value.clone())));
                let ties = bp.fresh("ties");
                windows.push(window_sum(&attains, &partition)?.alias(ties.name.clone()));
                (attains, Expr::Column(total.clone()) / Expr::Column(ties))
            }
            Reduction::Count => unreachable!("COUNT passes no cotangent"),
        };
        shares.push((rows, share));
    }
    let joined = if windows.is_empty() {
        joined
    } else {
        LogicalPlanBuilder::from(joined).window(windows)?.build()?
    };

    let mut cot = vec![None; input.out.len()];
    let mut added = vec![];
    for (j, column) in input
        .out
        .iter()
        .enumerate()
        .filter(|(j, _)| input_active[*j])
    {
        let mut terms = vec![];
        for (r, (rows, share)) in reduced.iter().zip(&shares) {
            if let Some(d) = pullback(&r.arg, column, share.clone(), joined.schema(), bp.options())?
            {
                terms.push(when(rows.clone(), d).otherwise(lit(0.0_f64))?);
            }
        }
        if let Some(total) = terms.into_iter().reduce(|a, b| a + b) {
            let name = bp.fresh("d");
            added.push(total.alias(name.name.clone()));
            cot[j] = Some(name);
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    let plan = LogicalPlanBuilder::from(joined)
        .project(with_columns(&input.plan, added))?
        .build()?;
    Ok(Some(Bar {
        plan,
        aug: input,
        cot,
    }))
}

/// `SUM(CASE WHEN condition THEN 1 ELSE 0 END) OVER (PARTITION BY partition)`:
/// how many rows of the partition meet `condition`.
fn window_sum(condition: &Expr, partition: &[Expr]) -> Result<Expr> {
    let indicator = when(condition.clone(), lit(1_i64)).otherwise(lit(0_i64))?;
    Expr::from(WindowFunction::new(sum_udaf(), vec![indicator]))
        .partition_by(partition.to_vec())
        .build()
}
