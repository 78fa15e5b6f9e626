//! One reverse pass: its state, and the driver that calls the operators'
//! rules down the loss and back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion_common::{Column, Result};
use datafusion_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder};

use super::assemble::assemble;
use super::augment::{extend, rename, with_columns, Augmented, Bar, Layout};
use super::backprop::Backprop;
use super::fanout::multiplies_groups;
use super::loss::reads_a_parameter;
use super::operators;
use super::parameter::Parameter;
use super::staged::{computed_again, stage_scan, Stage, Staged};
use crate::options::AutogradOptions;

/// Numbers the passes of this process, so that their stages' names never meet.
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// One reverse pass through one loss, for several parameters at once.
pub(crate) struct Pass<'a> {
    parameters: &'a [Parameter],
    options: &'a AutogradOptions,
    pass: usize,
    /// The namespace nodes are being augmented in (see [`Backprop::forward_apart`]).
    scope: Cell<usize>,
    scopes: Cell<usize>,
    ids: RefCell<HashMap<(*const LogicalPlan, usize), usize>>,
    /// Every node's active columns, found once.
    activity: RefCell<HashMap<*const LogicalPlan, Rc<[bool]>>>,
    /// Every node's augmented plan, built once per scope.
    forwards: RefCell<HashMap<(*const LogicalPlan, usize), Augmented>>,
    /// The augmented plans of the inputs of reductions, kept as stages.
    reduced: RefCell<HashMap<(*const LogicalPlan, usize), Augmented>>,
    stages: RefCell<Vec<Stage>>,
    counter: Cell<usize>,
    /// Per parameter: the contributions that reached its table.
    contributions: RefCell<Vec<Vec<LogicalPlan>>>,
    /// Whether the loss's value is a result too, after the gradients.
    loss_result: bool,
}

impl<'a> Pass<'a> {
    pub fn new(parameters: &'a [Parameter], options: &'a AutogradOptions) -> Self {
        Self {
            parameters,
            options,
            pass: PASSES.fetch_add(1, Ordering::Relaxed),
            scope: Cell::new(0),
            scopes: Cell::new(1),
            ids: RefCell::default(),
            activity: RefCell::default(),
            forwards: RefCell::default(),
            reduced: RefCell::default(),
            stages: RefCell::default(),
            counter: Cell::new(0),
            contributions: RefCell::new(vec![vec![]; parameters.len()]),
            loss_result: false,
        }
    }

    /// The same pass, its loss's value a result after the gradients where
    /// `keep`.
    pub fn keeping_the_loss(self, keep: bool) -> Self {
        Self {
            loss_result: keep,
            ..self
        }
    }

    /// The number of `node`, in the current scope, in this pass.
    fn id(&self, node: &LogicalPlan) -> usize {
        let mut ids = self.ids.borrow_mut();
        let next = ids.len();
        *ids.entry(self.key(node)).or_insert(next)
    }

    /// `node` in the current scope.
    fn key(&self, node: &LogicalPlan) -> (*const LogicalPlan, usize) {
        (node as *const LogicalPlan, self.scope.get())
    }

    /// `node`'s rows under this pass's names, for a node whose value does not
    /// depend on the parameters.
    fn constant(&self, node: &LogicalPlan) -> Result<Augmented> {
        let out = self.out_names(node);
        Ok(Augmented {
            plan: rename(node.clone(), &out)?,
            out,
            layout: Layout::Constant,
        })
    }

    /// Passes `bar` down from `node` to the parameters' tables.
    fn backward(&self, node: &LogicalPlan, bar: Bar) -> Result<()> {
        let active = self.active(node)?;
        let reaches = bar
            .cot
            .iter()
            .zip(active.iter())
            .any(|(c, a)| c.is_some() && *a);
        if !reaches {
            return Ok(());
        }
        let inputs = node.inputs();
        for (k, input_bar) in operators::rule(node)?.backward(self, bar)? {
            self.backward(inputs[k], input_bar)?;
        }
        Ok(())
    }

    /// The gradients of `loss`, which returns one row and one column, one
    /// per parameter.
    pub fn differentiate(self, loss: &LogicalPlan) -> Result<Staged> {
        let mut seed_plan = None;
        if !self.active(loss)?[0] && reads_a_parameter(loss, self.parameters)? {
            // Nothing to pass back, but the gradient is NULL where the loss is.
            let aug = self.constant(loss)?;
            seed_plan = Some((self.stage(aug.plan)?, aug.out[0].clone()));
        } else if self.active(loss)?[0] {
            let aug = self.forward(loss)?;
            let seed = self.fresh("seed");
            // The loss's one row, kept: the reverse pass starts from it, and
            // the gradient is NULL where the loss is.
            let plan = self.stage(extend(
                aug.plan.clone(),
                vec![lit(1.0_f64).alias(seed.name.clone())],
            )?)?;
            let loss_value = aug.out[0].clone();
            seed_plan = Some((plan.clone(), loss_value));
            self.backward(
                loss,
                Bar {
                    plan,
                    aug,
                    cot: vec![Some(seed)],
                },
            )?;
        }
        let contributions = self.contributions.take();
        let mut results = self
            .parameters
            .iter()
            .zip(contributions)
            .map(|(parameter, plans)| assemble(&self, parameter, plans, seed_plan.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if let (true, Some((plan, value))) = (self.loss_result, &seed_plan) {
            results.extend(loss_as_returned(loss, plan, value)?);
        }
        Ok(Staged {
            stages: self.stages.take(),
            results,
        })
    }

    /// `plan` with every reduction under its projections, filters and joins
    /// kept as a stage, and its schema unchanged; None when a reduction's
    /// columns could not be read from a stage as they are (qualified, or a
    /// name twice) and nothing above it could be kept in its place.
    fn reductions_kept(&self, plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
        let Some(rebuilt) = self.reductions_staged(plan)? else {
            return Ok(None);
        };
        if rebuilt.schema() == plan.schema() {
            return Ok(Some(rebuilt));
        }
        let mut same = vec![];
        for ((qualifier, field), (now, _)) in plan.schema().iter().zip(rebuilt.schema().iter()) {
            let column = Expr::Column(Column::new(now.cloned(), field.name()));
            same.push(match (qualifier, now) {
                (Some(q), Some(n)) if q == n => column,
                (None, None) => column,
                // A stage's column, unqualified where it was kept.
                (None, Some(_)) => column.alias(field.name()),
                _ => return Ok(None),
            });
        }
        Ok(Some(
            LogicalPlanBuilder::from(rebuilt).project(same)?.build()?,
        ))
    }

    /// `node` with the highest nodes under its projections, filters, joins
    /// and aliases that are none of these kept as stages, where they can be
    /// read back as they are; None where one cannot.
    fn reductions_staged(&self, node: &LogicalPlan) -> Result<Option<LogicalPlan>> {
        if let LogicalPlan::TableScan(_) = node {
            return Ok(Some(node.clone()));
        }
        if let LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Join(_)
        | LogicalPlan::SubqueryAlias(_) = node
        {
            let mut inputs = vec![];
            for input in node.inputs() {
                match self.reductions_staged(input)? {
                    Some(input) => inputs.push(input),
                    None => break,
                }
            }
            if inputs.len() == node.inputs().len() {
                return Ok(Some(node.with_new_exprs(node.expressions(), inputs)?));
            }
        }
        // Kept whole, where its columns read from a stage are the same
        // columns: unqualified, each name once. (A stage left unread by a
        // failed attempt below is dropped with the stages nothing reads.)
        let mut names = std::collections::HashSet::new();
        let readable = node
            .schema()
            .iter()
            .all(|(qualifier, field)| qualifier.is_none() && names.insert(field.name()));
        if readable {
            Ok(Some(self.stage(node.clone())?))
        } else {
            Ok(None)
        }
    }
}

impl Backprop for Pass<'_> {
    fn parameters(&self) -> &[Parameter] {
        self.parameters
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
        let constant = inputs_active.iter().all(|a| !a.iter().any(|x| *x))
            && !matches!(node, LogicalPlan::TableScan(_));
        let active: Rc<[bool]> = if constant {
            vec![false; node.schema().fields().len()].into()
        } else {
            operators::rule(node)?
                .activity(self, &inputs_active)?
                .into()
        };
        self.activity.borrow_mut().insert(key, Rc::clone(&active));
        Ok(active)
    }

    fn forward(&self, node: &LogicalPlan) -> Result<Augmented> {
        let key = self.key(node);
        if let Some(known) = self.forwards.borrow().get(&key) {
            return Ok(known.clone());
        }
        let augmented = if self.active(node)?.iter().any(|a| *a) {
            operators::rule(node)?.forward(self)?
        } else {
            self.constant(node)?
        };
        self.forwards.borrow_mut().insert(key, augmented.clone());
        Ok(augmented)
    }

    fn forward_apart(&self, node: &LogicalPlan) -> Result<Augmented> {
        let outer = self.scope.get();
        self.scope.set(self.scopes.get());
        self.scopes.set(self.scopes.get() + 1);
        let augmented = self.forward(node);
        self.scope.set(outer);
        augmented
    }

    fn reduced_input(&self, node: &LogicalPlan) -> Result<Augmented> {
        let key = self.key(node);
        if let Some(known) = self.reduced.borrow().get(&key) {
            return Ok(known.clone());
        }
        let augmented = self.forward(node)?;
        // Rows computed from rows alone (a join of tables) are computed
        // again by each reader: kept, they would take as much memory as the
        // join is large — the first layer of a network, 2,048 rows a sample.
        // Rows computed from rows and the groups of reductions joined on
        // some of their keys (a layer's outputs with the next layer's
        // weights: 320 rows a sample of a dozen columns, from 32 groups) keep
        // the groups, as many rows as there are groups, and compute the rest
        // again. Joined on all their keys (a sample's prediction with its
        // target), the join is no larger than the groups, and is kept.
        let again = if computed_again(&augmented.plan)? {
            Some(augmented.plan.clone())
        } else {
            match self.reductions_kept(&augmented.plan)? {
                Some(plan)
                    if computed_again(&plan)?
                        && multiplies_groups(&plan, &self.stages.borrow())? =>
                {
                    Some(plan)
                }
                _ => None,
            }
        };
        let kept = if let Some(plan) = again {
            Augmented {
                plan: selecting_its_columns(plan)?,
                ..augmented
            }
        } else {
            Augmented {
                plan: self.stage(augmented.plan.clone())?,
                ..augmented
            }
        };
        self.reduced.borrow_mut().insert(key, kept.clone());
        Ok(kept)
    }

    fn stage(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let plan = selecting_its_columns(plan)?;
        let mut stages = self.stages.borrow_mut();
        let name = format!("__ag{}_s{}", self.pass, stages.len());
        let scan = stage_scan(&name, &plan)?;
        stages.push(Stage { name, plan });
        Ok(scan)
    }

    fn contribute(&self, k: usize, plan: LogicalPlan) {
        self.contributions.borrow_mut()[k].push(plan);
    }
}

/// The loss's row as `loss` returns it, read from the pass's stage `kept`
/// whose column `value` holds it; None where the pass computed it in another
/// type than the loss's.
fn loss_as_returned(
    loss: &LogicalPlan,
    kept: &LogicalPlan,
    value: &Column,
) -> Result<Option<LogicalPlan>> {
    let field = loss.schema().field(0);
    let (_, computed) = kept.schema().qualified_field_from_column(value)?;
    if computed.data_type() != field.data_type() {
        return Ok(None);
    }
    let plan = LogicalPlanBuilder::from(kept.clone())
        .project([Expr::Column(value.clone()).alias(field.name())])?
        .build()?;
    Ok(Some(plan))
}

/// `plan` as a query that selects its columns by name, as a stage is one:
/// printed as SQL it stands alone (a common table expression), where a join
/// read as one side of another join would be printed into that join's
/// `FROM` and its conditions read against the wrong relations.
fn selecting_its_columns(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(_) => Ok(plan),
        other => {
            let columns = with_columns(&other, []);
            datafusion_expr::LogicalPlanBuilder::from(other)
                .project(columns)?
                .build()
        }
    }
}
