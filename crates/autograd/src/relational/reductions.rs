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

/// What [`spread`] gives: the contributions to the input's rows, and the
/// contributions summed per group.
pub(crate) struct Spread {
    /// Contributions to the input's rows, if any reach them.
    pub bar: Option<Bar>,
    /// One row per group (a stage): its key columns `keys`, in the order of
    /// the group key, and the sums `passed` of the columns asked to be passed.
    pub groups: LogicalPlan,
    pub keys: Vec<Column>,
    pub passed: Vec<Column>,
}

/// The reducing node's contributions, as [`spread`] reads them: `bar`, whose
/// group key is `keys`; and columns of it to sum per group as they are.
pub(crate) struct Grouped<'a> {
    pub bar: &'a Bar,
    pub keys: Vec<Expr>,
    pub passed: &'a [Column],
}

/// Contributions to the input's rows from contributions to the reductions.
///
/// `input` is the input's augmented plan and `input_keys` the group (or
/// partition) key over it; `grouped` holds the reducing node's
/// contributions. Contributions are summed per group, joined back onto every
/// input row of the group, and taken through each argument's derivative.
/// Rows a reduction does not count get no contribution from it. The columns
/// `grouped.passed` are summed per group with them, for a caller that takes
/// them on at the level of groups: the contributions are then read once.
pub(crate) fn spread(
    bp: &dyn Backprop,
    input: Augmented,
    input_active: &[bool],
    input_keys: Vec<Expr>,
    grouped: Grouped,
    reduced: Vec<Reduced>,
) -> Result<Spread> {
    let Grouped {
        bar,
        keys: bar_keys,
        passed,
    } = grouped;
    // Per group: the summed contributions.
    let keys: Vec<Column> = bar_keys.iter().map(|_| bp.fresh("key")).collect();
    let totals: Vec<Column> = reduced.iter().map(|_| bp.fresh("total")).collect();
    let passed_totals: Vec<Column> = passed.iter().map(|_| bp.fresh("total")).collect();
    let sums = reduced
        .iter()
        .map(|r| &r.cot)
        .chain(passed)
        .zip(totals.iter().chain(&passed_totals))
        .map(|(cot, total)| sum(Expr::Column(cot.clone())).alias(total.name.clone()));
    let groups = LogicalPlanBuilder::from(bar.plan.clone())
        .aggregate(
            bar_keys
                .into_iter()
                .zip(&keys)
                .map(|(e, k)| e.alias(k.name.clone())),
            sums,
        )?
        .build()?;
    // Per group, over the input rows: how many rows an AVG counts and how
    // many a key stands for. An aggregate of the input by its key, joined to
    // the groups (both one row per group): a window would sort the whole
    // input by the key, or run on one core where there is no key.
    let mut counted: Vec<(Column, Expr)> = vec![];
    let mut shares = vec![];
    for r in &reduced {
        let rows = match &r.filter {
            Some(f) => f.clone().and(r.arg.clone().is_not_null()),
            None => r.arg.clone().is_not_null(),
        };
        shares.push(match r.reduction {
            Reduction::Sum => Share::Total(rows),
            Reduction::Key => {
                let n = bp.fresh("count");
                counted.push((n.clone(), lit(true)));
                Share::Counted(lit(true), n)
            }
            Reduction::Avg => {
                let n = bp.fresh("count");
                counted.push((n.clone(), rows.clone()));
                Share::Counted(rows, n)
            }
            Reduction::Min | Reduction::Max => Share::Extremum(rows),
            Reduction::Count => unreachable!("COUNT passes no cotangent"),
        });
    }
    // Kept: what readers of the contributions below compute again is the
    // join of these with the input, never the sums.
    let groups = bp.stage(if counted.is_empty() {
        groups
    } else {
        let count_keys: Vec<Column> = keys.iter().map(|_| bp.fresh("key")).collect();
        let counts = LogicalPlanBuilder::from(input.plan.clone())
            .aggregate(
                input_keys
                    .iter()
                    .zip(&count_keys)
                    .map(|(e, k)| e.clone().alias(k.name.clone())),
                counted
                    .iter()
                    .map(|(n, rows)| Ok(sum(indicator(rows)?).alias(n.name.clone())))
                    .collect::<Result<Vec<_>>>()?,
            )?
            .build()?;
        let on = keys
            .iter()
            .zip(&count_keys)
            .map(|(k, c)| (Expr::Column(k.clone()), Expr::Column(c.clone())))
            .collect();
        join(
            selected(groups)?,
            selected(counts)?,
            on,
            None,
            JoinType::Inner,
            NullEquality::NullEqualsNull,
        )?
    })?;
    let on = keys
        .iter()
        .map(|k| Expr::Column(k.clone()))
        .zip(input_keys)
        .collect();
    // The groups, never more rows than the input, on the left: the side a
    // hash join builds (and a cross join collects) when the planner knows
    // neither side's size, as it does not for a stage.
    let joined = join(
        groups.clone(),
        input.plan.clone(),
        on,
        None,
        JoinType::Inner,
        NullEquality::NullEqualsNull,
    )?;

    // Per group, over the input rows: the extrema, then how many rows attain
    // them. The extremum is taken again here, from the very values compared
    // with it: a host that computes a relation once per reading may sum in
    // another order each time.
    let partition: Vec<Expr> = keys.iter().cloned().map(Expr::Column).collect();
    let mut extrema = vec![];
    let mut ties_counts = vec![];
    let mut pairs = vec![];
    for ((r, total), share) in reduced.iter().zip(&totals).zip(shares) {
        let total = Expr::Column(total.clone());
        let (rows, share) = match share {
            Share::Total(rows) => (rows, total),
            Share::Counted(rows, n) => (rows, total / Expr::Column(n)),
            Share::Extremum(rows) => {
                let extremum = bp.fresh("extremum");
                let among = when(rows.clone(), r.arg.clone()).otherwise(lit(ScalarValue::Null))?;
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
                let attains = rows.and(r.arg.clone().eq(Expr::Column(extremum)));
                let ties = bp.fresh("ties");
                ties_counts.push(
                    Expr::from(WindowFunction::new(sum_udaf(), vec![indicator(&attains)?]))
                        .partition_by(partition.clone())
                        .build()?
                        .alias(ties.name.clone()),
                );
                (attains, total / Expr::Column(ties))
            }
        };
        // No contribution (NULL) where the row is not reduced.
        let cotangent = when(rows, share).otherwise(lit(ScalarValue::Float64(None)))?;
        pairs.push((r.arg.clone(), cotangent));
    }
    let mut joined = joined;
    for windows in [extrema, ties_counts] {
        if !windows.is_empty() {
            joined = selected(LogicalPlanBuilder::from(joined).window(windows)?.build()?)?;
        }
    }
    let (cot, added) = pull_back(bp, &input, input_active, &pairs, joined.schema())?;
    let bar = if added.is_empty() {
        None
    } else {
        Some(Bar {
            plan: LogicalPlanBuilder::from(joined)
                .project(with_columns(&input.plan, added))?
                .build()?,
            aug: input,
            cot,
        })
    };
    Ok(Spread {
        bar,
        groups,
        keys,
        passed: passed_totals,
    })
}

/// How a reduction's total is shared among the rows of its group.
enum Share {
    /// Every row the reduction counts (the condition) gets the whole total.
    Total(Expr),
    /// Every row it counts gets the total over how many it counts (the column).
    Counted(Expr, Column),
    /// The rows it counts that attain the extremum share the total.
    Extremum(Expr),
}

/// `CASE WHEN condition THEN 1 ELSE 0 END`.
fn indicator(condition: &Expr) -> Result<Expr> {
    when(condition.clone(), lit(1_i64)).otherwise(lit(0_i64))
}
