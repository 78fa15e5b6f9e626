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
//! `FILTER` drops, are not reduced and get nothing. Ties at an extremum share
//! its cotangent equally (the value is not differentiable there; this is the
//! choice JAX makes).

use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion_common::{Column, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::{
    lit, when, Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder,
};

use super::augment::{join, selected, with_columns, Augmented, Bar};
use super::backprop::Backprop;
use super::pullback::pull_back;
use super::rule::unsupported;
use super::substitution::Substitution;

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

/// One call of an aggregate function, as aggregates and windows hold it.
pub(crate) struct ReductionCall<'a> {
    /// The whole expression, for messages.
    pub expr: &'a Expr,
    pub name: &'a str,
    pub args: &'a [Expr],
    pub filter: Option<&'a Expr>,
    pub distinct: bool,
}

impl ReductionCall<'_> {
    /// The reduction the call performs, or an error naming `node` if the
    /// reverse pass cannot follow it.
    pub fn reduction(&self, node: &LogicalPlan) -> Result<Reduction> {
        let Some(reduction) = Reduction::of(self.name) else {
            return unsupported(
                node,
                format!("the aggregate function `{}` has no reverse rule", self.name),
            );
        };
        if !reduction.is_differentiable() {
            return Ok(reduction);
        }
        if self.distinct {
            return unsupported(node, format!("`{}` reduces DISTINCT values", self.expr));
        }
        if self.args.len() != 1 {
            return unsupported(
                node,
                format!("`{}` takes {} arguments", self.expr, self.args.len()),
            );
        }
        Ok(reduction)
    }

    /// The call with contributions `cot` to its value, over the input's
    /// augmented plan.
    pub fn reduced(
        &self,
        node: &LogicalPlan,
        substitution: &Substitution,
        cot: Column,
    ) -> Result<Reduced> {
        Ok(Reduced {
            reduction: self.reduction(node)?,
            arg: substitution.apply(&self.args[0])?,
            filter: self.filter.map(|f| substitution.apply(f)).transpose()?,
            cot,
        })
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
}

/// Contributions to the input's rows from contributions to the reductions.
///
/// `input` is the input's augmented plan and `input_keys` the group (or
/// partition) key over it; `bar` holds the reducing node's contributions,
/// whose group key is `bar_keys`. Contributions are summed per group, joined
/// back onto every input row of the group, and taken through each argument's
/// derivative. Rows a reduction does not count get no contribution from it.
pub(crate) fn spread(
    bp: &dyn Backprop,
    input: Augmented,
    input_active: &[bool],
    input_keys: Vec<Expr>,
    bar: &Bar,
    bar_keys: Vec<Expr>,
    reduced: Vec<Reduced>,
) -> Result<Option<Bar>> {
    // Per group: the summed contributions.
    let keys: Vec<Column> = bar_keys.iter().map(|_| bp.fresh("key")).collect();
    let totals: Vec<Column> = reduced.iter().map(|_| bp.fresh("total")).collect();
    let groups = LogicalPlanBuilder::from(bar.plan.clone())
        .aggregate(
            bar_keys
                .into_iter()
                .zip(&keys)
                .map(|(e, k)| e.alias(k.name.clone())),
            reduced
                .iter()
                .zip(&totals)
                .map(|(r, total)| sum(Expr::Column(r.cot.clone())).alias(total.name.clone())),
        )?
        .build()?;
    let on = keys
        .iter()
        .map(|k| Expr::Column(k.clone()))
        .zip(input_keys)
        .collect();
    // The groups, never more rows than the input, on the left: the side a
    // hash join builds (and a cross join collects) when the planner knows
    // neither side's size, as it does not for a stage.
    let joined = join(
        selected(groups)?,
        input.plan.clone(),
        on,
        None,
        JoinType::Inner,
        NullEquality::NullEqualsNull,
    )?;

    // Per group, over the input rows: the extrema, then how many rows are
    // counted and how many attain the extremum. The extremum is taken again
    // here, from the very values compared with it: a host that computes a
    // relation once per reading may sum in another order each time.
    let partition: Vec<Expr> = keys.iter().cloned().map(Expr::Column).collect();
    let mut extrema = vec![];
    let mut counts = vec![];
    let mut pairs = vec![];
    for (r, total) in reduced.iter().zip(&totals) {
        let counted = match &r.filter {
            Some(f) => f.clone().and(r.arg.clone().is_not_null()),
            None => r.arg.clone().is_not_null(),
        };
        let total = Expr::Column(total.clone());
        let (rows, share) = match r.reduction {
            Reduction::Sum => (counted, total),
            Reduction::Key => {
                let n = bp.fresh("count");
                counts.push(window_count(&lit(true), &partition)?.alias(n.name.clone()));
                (lit(true), total / Expr::Column(n))
            }
            Reduction::Avg => {
                let n = bp.fresh("count");
                counts.push(window_count(&counted, &partition)?.alias(n.name.clone()));
                (counted, total / Expr::Column(n))
            }
            Reduction::Min | Reduction::Max => {
                let extremum = bp.fresh("extremum");
                let among =
                    when(counted.clone(), r.arg.clone()).otherwise(lit(ScalarValue::Null))?;
                let udaf = match r.reduction {
                    Reduction::Min => min_udaf(),
                    _ => max_udaf(),
                };
                extrema.push(
                    Expr::from(WindowFunction::new(udaf, vec![among]))
                        .partition_by(partition.clone())
                        .build()?
                        .alias(extremum.name.clone()),
                );
                let attains = counted.and(r.arg.clone().eq(Expr::Column(extremum)));
                let ties = bp.fresh("ties");
                counts.push(window_count(&attains, &partition)?.alias(ties.name.clone()));
                (attains, total / Expr::Column(ties))
            }
            Reduction::Count => unreachable!("COUNT passes no cotangent"),
        };
        // No contribution (NULL) where the row is not reduced.
        let cotangent = when(rows, share).otherwise(lit(ScalarValue::Float64(None)))?;
        pairs.push((r.arg.clone(), cotangent));
    }
    let mut joined = joined;
    for windows in [extrema, counts] {
        if !windows.is_empty() {
            joined = selected(LogicalPlanBuilder::from(joined).window(windows)?.build()?)?;
        }
    }
    let (cot, added) = pull_back(bp, &input, input_active, &pairs, joined.schema())?;
    if added.is_empty() {
        return Ok(None);
    }
    Ok(Some(Bar {
        plan: LogicalPlanBuilder::from(joined)
            .project(with_columns(&input.plan, added))?
            .build()?,
        aug: input,
        cot,
    }))
}

/// `SUM(CASE WHEN condition THEN 1 ELSE 0 END) OVER (PARTITION BY partition)`:
/// how many rows of the partition meet `condition`.
fn window_count(condition: &Expr, partition: &[Expr]) -> Result<Expr> {
    let indicator = when(condition.clone(), lit(1_i64)).otherwise(lit(0_i64))?;
    Expr::from(WindowFunction::new(sum_udaf(), vec![indicator]))
        .partition_by(partition.to_vec())
        .build()
}
