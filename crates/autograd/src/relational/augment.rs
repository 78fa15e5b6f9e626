//! The reverse pass's state and its two kinds of relation: augmented plans
//! (forward) and contributions (backward).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion_common::{Column, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::logical_plan::Join;
use datafusion_expr::{
    lit, when, Expr, ExprFunctionExt, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder,
};

use super::operators;
use super::parameter::Parameter;
use super::GRADIENT_COLUMN;

/// A node's rows for the reverse pass.
///
/// Every column of an augmented plan has a name of its own, unqualified and
/// used nowhere else in the gradient's plan, so plans combine (join, union)
/// without clashes and a column is found by its name alone.
#[derive(Clone, Debug)]
pub(crate) struct Augmented {
    pub plan: LogicalPlan,
    /// Where the node's output columns are, in the order of its schema.
    pub out: Vec<Column>,
    /// How the inputs' rows are found again.
    pub layout: Layout,
}

#[derive(Clone, Debug)]
pub(crate) enum Layout {
    /// Nothing below needs cotangents.
    Constant,
    /// The parameter's table; `columns` hold each of the table's columns.
    Parameter { columns: Vec<Column> },
    /// Each output row comes from one row of each input, and every column of
    /// the inputs' augmented plans is present under its own name.
    Rows(Vec<Augmented>),
    /// Each output row stands for a group of input rows; the reverse rule
    /// recomputes the input.
    Groups,
    /// Each output row comes from one input, named by `tag`; `columns[k]` are
    /// the columns here that hold input k's augmented plan's columns.
    Branches {
        tag: Column,
        inputs: Vec<(Augmented, Vec<Column>)>,
    },
}

/// Contributions to the cotangents of a node's rows.
///
/// Every row of `plan` is a row of `aug.plan` (with all its columns) and, in
/// the columns `cot`, a contribution to the cotangent of the node's output
/// columns; a row's cotangent is the sum of its contributions.
#[derive(Clone, Debug)]
pub(crate) struct Bar {
    pub plan: LogicalPlan,
    pub aug: Augmented,
    /// Per output column of the node: the column holding its contribution.
    pub cot: Vec<Option<Column>>,
}

/// One reverse pass through one loss.
pub(crate) struct Backprop<'a> {
    pub parameter: &'a Parameter,
    ids: RefCell<HashMap<*const LogicalPlan, usize>>,
    pub activity: RefCell<HashMap<*const LogicalPlan, Rc<[bool]>>>,
    counter: Cell<usize>,
    /// The parameter table's contributions: its columns and the cotangent.
    contributions: RefCell<Vec<LogicalPlan>>,
}

impl<'a> Backprop<'a> {
    pub fn new(parameter: &'a Parameter) -> Self {
        Self {
            parameter,
            ids: RefCell::default(),
            activity: RefCell::default(),
            counter: Cell::new(0),
            contributions: RefCell::default(),
        }
    }

    /// The number of `node`, stable for this pass, so that its augmented
    /// plan has the same column names each time it is built.
    fn id(&self, node: &LogicalPlan) -> usize {
        let mut ids = self.ids.borrow_mut();
        let next = ids.len();
        *ids.entry(node as *const LogicalPlan).or_insert(next)
    }

    /// The name of output column `j` of `node` in its augmented plan.
    pub fn out_name(&self, node: &LogicalPlan, j: usize) -> Column {
        self.named(node, j)
    }

    /// A column of `node`'s augmented plan, named the same each time it is built.
    pub fn named(&self, node: &LogicalPlan, suffix: impl std::fmt::Display) -> Column {
        Column::from_name(format!("__ag{}_{suffix}", self.id(node)))
    }

    /// A column name used nowhere else.
    pub fn fresh(&self, what: &str) -> Column {
        let n = self.counter.get();
        self.counter.set(n + 1);
        Column::from_name(format!("__ag_{what}{n}"))
    }

    /// `node`'s augmented plan.
    pub fn forward(&self, node: &LogicalPlan) -> Result<Augmented> {
        if !self.active(node)?.iter().any(|a| *a) {
            return self.constant(node);
        }
        (operators::rule(node)?.forward)(self, node)
    }

    /// `node`'s rows under this pass's names, for a node whose value does not
    /// depend on the parameter.
    pub fn constant(&self, node: &LogicalPlan) -> Result<Augmented> {
        let out: Vec<Column> = (0..node.schema().fields().len())
            .map(|j| self.out_name(node, j))
            .collect();
        let plan = rename(node.clone(), &out)?;
        Ok(Augmented {
            plan,
            out,
            layout: Layout::Constant,
        })
    }

    /// Passes `bar` down from `node` to the parameter's table.
    pub fn backward(&self, node: &LogicalPlan, bar: Bar) -> Result<()> {
        let active = self.active(node)?;
        if !bar.cot.iter().zip(active.iter()).any(|(c, a)| c.is_some() && *a) {
            return Ok(());
        }
        let inputs = node.inputs();
        for (k, input_bar) in (operators::rule(node)?.backward)(self, node, bar)? {
            self.backward(inputs[k], input_bar)?;
        }
        Ok(())
    }

    /// Records contributions that reached the parameter's table.
    pub fn contribute(&self, plan: LogicalPlan) {
        self.contributions.borrow_mut().push(plan);
    }

    /// The gradient of `loss`, which returns one row and one column.
    pub fn differentiate(&self, loss: &LogicalPlan) -> Result<LogicalPlan> {
        if self.active(loss)?[0] {
            let aug = self.forward(loss)?;
            let seed = self.fresh("seed");
            let plan = LogicalPlanBuilder::from(aug.plan.clone())
                .project(with_columns(&aug.plan, [lit(1.0_f64).alias(seed.name.clone())]))?
                .build()?;
            self.backward(
                loss,
                Bar {
                    plan,
                    aug,
                    cot: vec![Some(seed)],
                },
            )?;
        }
        self.assemble()
    }

    /// Every row of the parameter's table with the sum of its contributions,
    /// shared equally among identical rows.
    fn assemble(&self) -> Result<LogicalPlan> {
        let table = self.parameter.scan()?;
        let names: Vec<String> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let keys: Vec<Column> = names.iter().map(|_| self.fresh("key")).collect();
        let copies = self.fresh("copies");
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

        let mut contributions = self.contributions.take().into_iter();
        let Some(first) = contributions.next() else {
            return project_gradient(numbered, &keys, &names, lit(0.0_f64));
        };
        let all = contributions.try_fold(first, |all, more| {
            LogicalPlanBuilder::from(all).union(more)?.build()
        })?;
        let group_keys: Vec<Column> = names.iter().map(|_| self.fresh("key")).collect();
        let (total, missing) = (self.fresh("total"), self.fresh("missing"));
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
        let joined = LogicalPlan::Join(Join::try_new(
            Arc::new(numbered),
            Arc::new(sums),
            on,
            None,
            JoinType::Left,
            JoinConstraint::On,
            NullEquality::NullEqualsNull,
            false,
        )?);
        // A NULL contribution (the loss depends on a NULL there) makes the row's gradient NULL.
        let share = coalesce(vec![Expr::Column(total), lit(0.0_f64)]) / Expr::Column(copies);
        let grad = when(Expr::Column(missing).gt(lit(0_i64)), lit(ScalarValue::Float64(None)))
            .otherwise(share)?;
        project_gradient(joined, &keys, &names, grad)
    }
}

/// The name of the parameter table's `k`-th column in a contribution.
pub(crate) fn contribution_column(k: usize) -> String {
    format!("__ag_param{k}")
}

/// The contribution's column in a contribution.
pub(crate) const CONTRIBUTION: &str = "__ag_contribution";

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

/// Several sets of contributions to one node's rows, as one.
pub(crate) fn merge(bp: &Backprop, bars: Vec<Bar>) -> Result<Option<Bar>> {
    let mut bars: Vec<Bar> = bars
        .into_iter()
        .filter(|b| b.cot.iter().any(Option::is_some))
        .collect();
    if bars.len() <= 1 {
        return Ok(bars.pop());
    }
    let aug = bars[0].aug.clone();
    let cot: Vec<Option<Column>> = (0..aug.out.len())
        .map(|j| bars.iter().any(|b| b.cot[j].is_some()).then(|| bp.fresh("d")))
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
        let exprs: Vec<Expr> = aug
            .plan
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .chain(extra)
            .collect();
        let plan = LogicalPlanBuilder::from(bar.plan.clone()).project(exprs)?.build()?;
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

/// `plan` under a projection of all its columns, when it is an aggregate or a
/// window: the shape in which DataFusion's unparser writes them as SQL.
pub(crate) fn selected(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => {
            let columns = with_columns(&plan, []);
            LogicalPlanBuilder::from(plan).project(columns)?.build()
        }
        other => Ok(other),
    }
}

/// `plan` with its columns renamed to `names`, in order.
pub(crate) fn rename(plan: LogicalPlan, names: &[Column]) -> Result<LogicalPlan> {
    let exprs: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .zip(names)
        .map(|(c, n)| Expr::Column(c).alias(n.name.clone()))
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// Every column of `plan`, followed by `extra`.
pub(crate) fn with_columns(
    plan: &LogicalPlan,
    extra: impl IntoIterator<Item = Expr>,
) -> Vec<Expr> {
    plan.schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .chain(extra)
        .collect()
}
