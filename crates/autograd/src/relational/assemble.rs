//! The end of a reverse pass: the contributions that reached the
//! parameter's table, summed per row of the table.

use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion_common::{Column, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::{
    lit, when, Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder,
};

use super::augment::{contribution_column, join, rename, selected, CONTRIBUTION};
use super::backprop::Backprop;

/// The column of the result that holds the gradient.
pub const GRADIENT_COLUMN: &str = "grad";

/// Every row of the parameter's table with the sum of its contributions,
/// shared equally among identical rows.
pub(crate) fn assemble(bp: &dyn Backprop, contributions: Vec<LogicalPlan>) -> Result<LogicalPlan> {
    let table = bp.parameter().scan()?;
    let names: Vec<String> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let keys: Vec<Column> = names.iter().map(|_| bp.fresh("key")).collect();
    let copies = bp.fresh("copies");
    // How many copies of each row the table holds.
    let multiplicity = Expr::from(WindowFunction::new(count_udaf(), vec![lit(1_i64)]))
        .partition_by(keys.iter().cloned().map(Expr::Column).collect())
        .build()?
        .alias(copies.name.clone());
    let numbered = selected(
        LogicalPlanBuilder::from(rename(table, &keys)?)
            .window(vec![multiplicity])?
            .build()?,
    )?;

    let mut contributions = contributions.into_iter();
    let Some(first) = contributions.next() else {
        return project_gradient(numbered, &keys, &names, lit(0.0_f64));
    };
    let all = contributions.try_fold(first, |all, more| {
        LogicalPlanBuilder::from(all).union(more)?.build()
    })?;
    let group_keys: Vec<Column> = names.iter().map(|_| bp.fresh("key")).collect();
    let (total, missing) = (bp.fresh("total"), bp.fresh("missing"));
    let value = Expr::Column(Column::from_name(CONTRIBUTION));
    let sums = LogicalPlanBuilder::from(all)
        .aggregate(
            group_keys.iter().enumerate().map(|(k, g)| {
                Expr::Column(Column::from_name(contribution_column(k))).alias(g.name.clone())
            }),
            [
                sum(value.clone()).alias(total.name.clone()),
                (count(lit(1_i64)) - count(value)).alias(missing.name.clone()),
            ],
        )?
        .build()?;
    let sums = selected(sums)?;
    let on = keys
        .iter()
        .zip(&group_keys)
        .map(|(k, g)| (Expr::Column(k.clone()), Expr::Column(g.clone())))
        .collect();
    let joined = join(
        numbered,
        sums,
        on,
        None,
        JoinType::Left,
        NullEquality::NullEqualsNull,
    )?;
    // A NULL contribution (the loss depends on a NULL there) makes the row's gradient NULL.
    let share = coalesce(vec![Expr::Column(total), lit(0.0_f64)]) / Expr::Column(copies);
    let grad = when(
        Expr::Column(missing).gt(lit(0_i64)),
        lit(ScalarValue::Float64(None)),
    )
    .otherwise(share)?;
    project_gradient(joined, &keys, &names, grad)
}

/// The table's columns, under their own names, and the gradient.
fn project_gradient(
    plan: LogicalPlan,
    keys: &[Column],
    names: &[String],
    grad: Expr,
) -> Result<LogicalPlan> {
    let mut out: Vec<Expr> = keys
        .iter()
        .zip(names)
        .map(|(k, n)| Expr::Column(k.clone()).alias(n.clone()))
        .collect();
    out.push(grad.alias(GRADIENT_COLUMN));
    LogicalPlanBuilder::from(plan).project(out)?.build()
}
