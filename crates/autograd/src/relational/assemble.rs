//! The end of a reverse pass: the contributions that reached a parameter's
//! table, summed per row of the table.

use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion_common::{Column, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::{
    lit, when, Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder,
};

use super::augment::{contribution_column, join, rename, selected, CONTRIBUTION};
use super::backprop::Backprop;
use super::parameter::Parameter;

/// The column of the result that holds the gradient.
pub const GRADIENT_COLUMN: &str = "grad";

/// Every row of `parameter`'s table with the sum of its `contributions`,
/// shared equally among identical rows. `seed` is the loss's row and the
/// column of its value, where the loss depends on a parameter: where the
/// loss is NULL, so is every gradient it passed anything to.
pub(crate) fn assemble(
    bp: &dyn Backprop,
    parameter: &Parameter,
    contributions: Vec<LogicalPlan>,
    seed: Option<&(LogicalPlan, Column)>,
) -> Result<LogicalPlan> {
    let table = parameter.scan()?;
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
        return project_gradient(numbered, &keys, &names, lit(0.0_f64), bp, seed);
    };
    let all = contributions.try_fold(first, |all, more| {
        LogicalPlanBuilder::from(all).union(more)?.build()
    })?;
    let group_keys: Vec<Column> = names.iter().map(|_| bp.fresh("key")).collect();
    let total = bp.fresh("total");
    let sums = LogicalPlanBuilder::from(all)
        .aggregate(
            group_keys.iter().enumerate().map(|(k, g)| {
                Expr::Column(Column::from_name(contribution_column(k))).alias(g.name.clone())
            }),
            [sum(Expr::Column(Column::from_name(CONTRIBUTION))).alias(total.name.clone())],
        )?
        .build()?;
    let on = keys
        .iter()
        .zip(&group_keys)
        .map(|(k, g)| (Expr::Column(k.clone()), Expr::Column(g.clone())))
        .collect();
    let joined = join(
        numbered,
        selected(sums)?,
        on,
        None,
        JoinType::Left,
        NullEquality::NullEqualsNull,
    )?;
    let share = coalesce(vec![Expr::Column(total), lit(0.0_f64)]) / Expr::Column(copies);
    project_gradient(joined, &keys, &names, share, bp, seed)
}

/// The table's columns, under their own names, and the gradient: `grad`,
/// or NULL where the loss in `seed` is.
fn project_gradient(
    plan: LogicalPlan,
    keys: &[Column],
    names: &[String],
    grad: Expr,
    bp: &dyn Backprop,
    seed: Option<&(LogicalPlan, Column)>,
) -> Result<LogicalPlan> {
    let (plan, grad) = match seed {
        Some((seed, value)) => {
            let undefined = bp.fresh("undefined");
            let flag = LogicalPlanBuilder::from(seed.clone())
                .project([Expr::Column(value.clone())
                    .is_null()
                    .alias(undefined.name.clone())])?
                .build()?;
            let plan = LogicalPlanBuilder::from(plan).cross_join(flag)?.build()?;
            let grad =
                when(Expr::Column(undefined), lit(ScalarValue::Float64(None))).otherwise(grad)?;
            (plan, grad)
        }
        None => (plan, grad),
    };
    let mut out: Vec<Expr> = keys
        .iter()
        .zip(names)
        .map(|(k, n)| Expr::Column(k.clone()).alias(n.clone()))
        .collect();
    out.push(grad.alias(GRADIENT_COLUMN));
    LogicalPlanBuilder::from(plan).project(out)?.build()
}
