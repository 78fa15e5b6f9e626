//! One reverse pass: its state, the driver that calls the operators' rules,
//! and the sum of the contributions that reach the parameter's table.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion_common::{Column, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::{
    lit, when, Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder,
};

use super::augment::{
    contribution_column, join, rename, selected, with_columns, Augmented, Bar, Layout, CONTRIBUTION,
};
use super::operators;
use super::parameter::Parameter;
use super::staged::Staged;
use super::GRADIENT_COLUMN;
use crate::options::AutogradOptions;

/// Numbers the passes of this process, so that their stages' names never meet.
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// One reverse pass through one loss.
pub(crate) struct Backprop<'a> {
    pub parameter: &'a Parameter,
    pub options: &'a AutogradOptions,
    pass: usize,
    ids: RefCell<HashMap<*const LogicalPlan, usize>>,
    pub activity: RefCell<HashMap<*const LogicalPlan, Rc<[bool]>>>,
    /// Every node's augmented plan, built once.
    forwards: RefCell<HashMap<*const LogicalPlan, Augmented>>,
    /// The augmented plans of the inputs of reductions, kept as stages.
    reduced: RefCell<HashMap<*const LogicalPlan, Augmented>>,
    stages: RefCell<Vec<(String, LogicalPlan)>>,
    counter: Cell<usize>,
    /// The parameter table's contributions: its columns and the cotangent.
    contributions: RefCell<Vec<LogicalPlan>>,
}

impl<'a> Backprop<'a> {
    pub fn new(parameter: &'a Parameter, options: &'a AutogradOptions) -> Self {
        Self {
            parameter,
            options,
            pass: PASSES.fetch_add(1, Ordering::Relaxed),
            ids: RefCell::default(),
            activity: RefCell::default(),
            forwards: RefCell::default(),
            reduced: RefCell::default(),
            stages: RefCell::default(),
            counter: Cell::new(0),
            contributions: RefCell::default(),
        }
    }

    /// The number of `node` in this pass.
    fn id(&self, node: &LogicalPlan) -> usize {
        let mut ids = self.ids.borrow_mut();
        let next = ids.len();
        *ids.entry(node as *const LogicalPlan).or_insert(next)
    }

    /// The name of output column `j` of `node` in its augmented plan.
    pub fn out_name(&self, node: &LogicalPlan, j: usize) -> Column {
        self.named(node, j)
    }

    /// A column of `node`'s augmented plan.
    pub fn named(&self, node: &LogicalPlan, suffix: impl std::fmt::Display) -> Column {
        Column::from_name(format!("__ag{}_{suffix}", self.id(node)))
    }

    /// A column name used nowhere else.
    pub fn fresh(&self, what: &str) -> Column {
        let n = self.counter.get();
        self.counter.set(n + 1);
        Column::from_name(format!("__ag_{what}{n}"))
    }

    /// `node`'s augmented plan, built once per pass.
    pub fn forward(&self, node: &LogicalPlan) -> Result<Augmented> {
        let key = node as *const LogicalPlan;
        if let Some(known) = self.forwards.borrow().get(&key) {
            return Ok(known.clone());
        }
        let augmented = if self.active(node)?.iter().any(|a| *a) {
            (operators::rule(node)?.forward)(self, node)?
        } else {
            self.constant(node)?
        };
        self.forwards.borrow_mut().insert(key, augmented.clone());
        Ok(augmented)
    }

    /// The augmented plan of `node`, the input of a reduction: computed once
    /// and kept, since both the reduction and its reverse rule read it.
    pub fn reduced_input(&self, node: &LogicalPlan) -> Result<Augmented> {
        let key = node as *const LogicalPlan;
        if let Some(known) = self.reduced.borrow().get(&key) {
            return Ok(known.clone());
        }
        let augmented = self.forward(node)?;
        let kept = Augmented {
            plan: self.stage(augmented.plan.clone())?,
            ..augmented
        };
        self.reduced.borrow_mut().insert(key, kept.clone());
        Ok(kept)
    }

    /// A relation read more than once: it becomes a stage, computed once,
    /// and a scan of it stands in its place.
    pub fn stage(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        // A stage is also a SQL statement, and a statement selects its columns.
        let plan = match plan {
            LogicalPlan::Projection(_) => plan,
            other => {
                let columns = with_columns(&other, []);
                LogicalPlanBuilder::from(other).project(columns)?.build()?
            }
        };
        let mut stages = self.stages.borrow_mut();
        let name = format!("__ag{}_stage{}", self.pass, stages.len());
        let source = LogicalTableSource::new(Arc::new(plan.schema().as_arrow().clone()));
        stages.push((name.clone(), plan));
        LogicalPlanBuilder::scan(name, Arc::new(source), None)?.build()
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
        if !bar
            .cot
            .iter()
            .zip(active.iter())
            .any(|(c, a)| c.is_some() && *a)
        {
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
    pub fn differentiate(self, loss: &LogicalPlan) -> Result<Staged> {
        if self.active(loss)?[0] {
            let aug = self.forward(loss)?;
            let seed = self.fresh("seed");
            let plan = LogicalPlanBuilder::from(aug.plan.clone())
                .project(with_columns(
                    &aug.plan,
                    [lit(1.0_f64).alias(seed.name.clone())],
                ))?
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
        let result = self.assemble()?;
        Ok(Staged {
            stages: self.stages.take(),
            result,
        })
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
