//! One reverse pass: its state, and the driver that calls the operators'
//! rules down the loss and back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion_common::{Column, Result};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::{lit, LogicalPlan, LogicalPlanBuilder};

use super::assemble::assemble;
use super::augment::{rename, with_columns, Augmented, Bar, Layout};
use super::backprop::Backprop;
use super::operators;
use super::parameter::Parameter;
use super::staged::Staged;
use crate::options::AutogradOptions;

/// Numbers the passes of this process, so that their stages' names never meet.
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// One reverse pass through one loss.
pub(crate) struct Pass<'a> {
    parameter: &'a Parameter,
    options: &'a AutogradOptions,
    pass: usize,
    ids: RefCell<HashMap<*const LogicalPlan, usize>>,
    /// Every node's active columns, found once.
    activity: RefCell<HashMap<*const LogicalPlan, Rc<[bool]>>>,
    /// Every node's augmented plan, built once.
    forwards: RefCell<HashMap<*const LogicalPlan, Augmented>>,
    /// The augmented plans of the inputs of reductions, kept as stages.
    reduced: RefCell<HashMap<*const LogicalPlan, Augmented>>,
    stages: RefCell<Vec<(String, LogicalPlan)>>,
    counter: Cell<usize>,
    /// The parameter table's contributions: its columns and the cotangent.
    contributions: RefCell<Vec<LogicalPlan>>,
}

impl<'a> Pass<'a> {
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

    /// `node`'s rows under this pass's names, for a node whose value does not
    /// depend on the parameter.
    fn constant(&self, node: &LogicalPlan) -> Result<Augmented> {
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
    fn backward(&self, node: &LogicalPlan, bar: Bar) -> Result<()> {
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
        let result = assemble(&self, self.contributions.take())?;
        Ok(Staged {
            stages: self.stages.take(),
            result,
        })
    }
}

impl Backprop for Pass<'_> {
    fn parameter(&self) -> &Parameter {
        self.parameter
    }

    fn options(&self) -> &AutogradOptions {
        self.options
    }

    fn named(&self, node: &LogicalPlan, suffix: &str) -> Column {
        Column::from_name(format!("__ag{}_{suffix}", self.id(node)))
    }

    fn fresh(&self, what: &str) -> Column {
        let n = self.counter.get();
        self.counter.set(n + 1);
        Column::from_name(format!("__ag_{what}{n}"))
    }

    fn active(&self, node: &LogicalPlan) -> Result<Rc<[bool]>> {
        let key = node as *const LogicalPlan;
        if let Some(known) = self.activity.borrow().get(&key) {
            return Ok(Rc::clone(known));
        }
        let inputs_active = node
            .inputs()
            .into_iter()
            .map(|input| self.active(input))
            .collect::<Result<Vec<_>>>()?;
        let active: Rc<[bool]> = if inputs_active.iter().all(|a| !a.iter().any(|x| *x))
            && !matches!(node, LogicalPlan::TableScan(_))
        {
            vec![false; node.schema().fields().len()].into()
        } else {
            (operators::rule(node)?.activity)(self, node, &inputs_active)?.into()
        };
        self.activity.borrow_mut().insert(key, Rc::clone(&active));
        Ok(active)
    }

    fn forward(&self, node: &LogicalPlan) -> Result<Augmented> {
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

    fn reduced_input(&self, node: &LogicalPlan) -> Result<Augmented> {
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

    fn stage(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
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

    fn contribute(&self, plan: LogicalPlan) {
        self.contributions.borrow_mut().push(plan);
    }
}
