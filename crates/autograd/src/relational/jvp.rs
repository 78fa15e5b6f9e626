//! Forward mode over relations: a query's rows with, beside each column that
//! depends on a parameter, its directional derivative along a tangent given
//! per row of the parameter's table — JAX's `jvp` for a whole query.
//!
//! Where the reverse pass needs row identities to send cotangents back, the
//! forward pass only carries a tangent column beside every differentiable
//! column, through every operator: projections push it through the
//! expressions' derivatives (the scalar engine, several seeds at once),
//! filters, sorts, joins and unions keep it with its row, and reductions
//! reduce it as they reduce the value (`SUM` sums tangents, `AVG` averages
//! them, `MIN`/`MAX` average those of the rows attaining the extremum, a
//! group key's tangent is its rows' mean). Stages stay stages: each is
//! computed once with its tangents.
//!
//! Applied to a gradient's plans it gives Hessian-vector products:
//! [`hvp`](super::hvp) is `jvp` of `gradient`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::expr_fn::avg;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion_common::{Column, DFSchema, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::{AggregateFunction, WindowFunction, WindowFunctionParams};
use datafusion_expr::logical_plan::{
    Aggregate, Filter, Join, Projection, Sort, SubqueryAlias, Union, Window,
};
use datafusion_expr::{
    lit, when, Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder, TableScan,
    WindowFrameBound, WindowFunctionDefinition,
};

use super::augment::join;
use super::parameter::Parameter;
use super::rule::operator;
use super::staged::{stage_scan, Stage, StageSource, Staged};
use crate::error::fail;
use crate::forward::marker::push_forward;
use crate::options::AutogradOptions;

/// Where the parameter's values move: the same amount at every row, or a
/// relation of the table's other columns and a DOUBLE column `tangent`
/// (rows matched on those columns; a row with no match does not move; a row
/// matched twice moves by the mean).
#[derive(Clone, Debug)]
pub enum Direction {
    Everywhere(f64),
    Rows(Box<LogicalPlan>),
}

/// The name of the tangent column of a relation the direction is given by.
pub const TANGENT_COLUMN: &str = "tangent";

/// A node's rows with tangents: its own columns, under their names, then a
/// tangent column for each of them that depends on the parameter.
#[derive(Clone, Debug)]
struct Dual {
    plan: LogicalPlan,
    /// Per output column of the node: the column holding its tangent.
    tangents: Vec<Option<Column>>,
    /// Whether `plan` is not the node's own (it reads a stage with tangents).
    changed: bool,
}

impl Dual {
    fn constant(plan: LogicalPlan) -> Self {
        let width = plan.schema().fields().len();
        Dual {
            plan,
            tangents: vec![None; width],
            changed: false,
        }
    }

    fn new(plan: LogicalPlan, tangents: Vec<Option<Column>>) -> Self {
        Dual {
            plan,
            tangents,
            changed: true,
        }
    }

    fn moves(&self) -> bool {
        self.tangents.iter().any(Option::is_some)
    }
}

/// One forward pass along `direction`.
pub(crate) struct Forward<'a> {
    parameter: &'a Parameter,
    direction: &'a Direction,
    options: &'a AutogradOptions,
    /// The stages with tangents, by the name of the stage they extend:
    /// their own name, and their tangent columns by column of the stage.
    stages: HashMap<String, (String, LogicalPlan, Vec<Option<Column>>)>,
    fresh: usize,
}

impl<'a> Forward<'a> {
    pub fn new(
        parameter: &'a Parameter,
        direction: &'a Direction,
        options: &'a AutogradOptions,
    ) -> Self {
        Self {
            parameter,
            direction,
            options,
            stages: HashMap::new(),
            fresh: 0,
        }
    }

    fn fresh(&mut self) -> Column {
        self.fresh += 1;
        Column::from_name(format!("__ag_t{}", self.fresh))
    }

    /// `staged` with tangents: stages that depend on the parameter extended
    /// by theirs, and each result's tangent columns named in the returned
    /// list, per result and column.
    pub fn staged(mut self, staged: &Staged) -> Result<(Staged, Vec<Vec<Option<Column>>>)> {
        let mut stages = vec![];
        for stage in &staged.stages {
            let dual = self.dual(&stage.plan)?;
            if !dual.moves() {
                // Kept under its name, reading the stages below in their
                // new form where it reads any that move.
                stages.push(Stage {
                    name: stage.name.clone(),
                    plan: dual.plan,
                });
                continue;
            }
            let name = format!("{}_t", stage.name);
            let scan = stage_scan(&name, &dual.plan)?;
            self.stages
                .insert(stage.name.clone(), (name.clone(), scan, dual.tangents));
            stages.push(Stage {
                name,
                plan: dual.plan,
            });
        }
        let mut results = vec![];
        let mut tangents = vec![];
        for result in &staged.results {
            let dual = self.dual(result)?;
            results.push(dual.plan);
            tangents.push(dual.tangents);
        }
        Ok((Staged { stages, results }, tangents))
    }

    fn dual(&mut self, node: &LogicalPlan) -> Result<Dual> {
        if let LogicalPlan::TableScan(scan) = node {
            return self.scan(node, scan);
        }
        let inputs = node
            .inputs()
            .into_iter()
            .map(|input| self.dual(input))
            .collect::<Result<Vec<_>>>()?;
        if !inputs.iter().any(Dual::moves) {
            if !inputs.iter().any(|d| d.changed) {
                return Ok(Dual::constant(node.clone()));
            }
            // Nothing moves, but a stage read below is read in its new form.
            let plans = inputs.into_iter().map(|d| d.plan).collect();
            let plan = node.with_new_exprs(node.expressions(), plans)?;
            let width = plan.schema().fields().len();
            return Ok(Dual::new(plan, vec![None; width]));
        }
        let dual = match node {
            LogicalPlan::Projection(p) => self.projection(p, one(inputs)),
            LogicalPlan::Filter(f) => {
                let input = one(inputs);
                let plan = LogicalPlan::Filter(Filter::try_new(
                    f.predicate.clone(),
                    Arc::new(input.plan),
                )?);
                Ok(Dual::new(plan, input.tangents))
            }
            LogicalPlan::Sort(s) => {
                let input = one(inputs);
                let plan = LogicalPlan::Sort(Sort {
                    expr: s.expr.clone(),
                    input: Arc::new(input.plan),
                    fetch: s.fetch,
                });
                Ok(Dual::new(plan, input.tangents))
            }
            LogicalPlan::SubqueryAlias(a) => {
                let input = one(inputs);
                let plan = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                    Arc::new(input.plan),
                    a.alias.clone(),
                )?);
                Ok(Dual::new(plan, input.tangents))
            }
            LogicalPlan::Join(j) => self.join(j, inputs),
            LogicalPlan::Aggregate(a) => self.aggregate(node, a, one(inputs)),
            LogicalPlan::Window(w) => self.window(node, w, one(inputs)),
            LogicalPlan::Union(u) => self.union(u, inputs),
            other => fail!(
                UnsupportedOperation,
                "cannot carry a tangent through {} `{}`",
                operator(other),
                other.display()
            ),
        };
        dual
    }

    /// A scan: of a stage with tangents, of the parameter's table, or of a
    /// constant table.
    fn scan(&mut self, node: &LogicalPlan, scan: &TableScan) -> Result<Dual> {
        if let Some(stage) = StageSource::of(&scan.source) {
            let Some((_, extended, tangents)) = self.stages.get(stage.name()) else {
                return Ok(Dual::constant(node.clone()));
            };
            let LogicalPlan::TableScan(extended) = extended else {
                unreachable!("a stage is read by a scan")
            };
            // Read under the old stage's name, so that what reads it finds its columns.
            let plan = LogicalPlanBuilder::scan(
                scan.table_name.clone(),
                Arc::clone(&extended.source),
                None,
            )?
            .build()?;
            let tangents = tangents.clone();
            return Ok(match &scan.projection {
                None => Dual::new(plan, tangents),
                Some(columns) => {
                    let mut kept: Vec<usize> = columns.clone();
                    let width = scan.source.schema().fields().len();
                    let mut projected = vec![];
                    for &c in columns {
                        projected.push(tangents[c].as_ref().map(|t| {
                            let at = width + tangents[..c].iter().flatten().count();
                            kept.push(at);
                            t.clone()
                        }));
                    }
                    let plan = LogicalPlanBuilder::from(plan).select(kept)?.build()?;
                    Dual::new(plan, projected)
                }
            });
        }
        if !self.parameter.is_scanned_by(scan) {
            return Ok(Dual::constant(node.clone()));
        }
        let full =
            LogicalPlanBuilder::scan(scan.table_name.clone(), Arc::clone(&scan.source), None)?
                .build()?;
        let columns = full.schema().columns();
        let moved = full.schema().index_of_column(&Column::new(
            Some(scan.table_name.clone()),
            self.parameter.column(),
        ))?;
        let t = self.fresh();
        let (rows, amount) = match self.direction {
            Direction::Everywhere(v) => (full, lit(*v)),
            Direction::Rows(relation) => {
                let others: Vec<Column> = columns
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != moved)
                    .map(|(_, c)| c.clone())
                    .collect();
                let keys: Vec<Column> = others.iter().map(|_| self.fresh()).collect();
                let mean = self.fresh();
                let by_row = LogicalPlanBuilder::from(relation.as_ref().clone())
                    .aggregate(
                        others.iter().zip(&keys).map(|(c, k)| {
                            Expr::Column(Column::from_name(&c.name)).alias(k.name.clone())
                        }),
                        [avg(Expr::Column(Column::from_name(TANGENT_COLUMN)))
                            .alias(mean.name.clone())],
                    )?
                    .build()?;
                let on = others
                    .iter()
                    .cloned()
                    .map(Expr::Column)
                    .zip(keys.into_iter().map(Expr::Column))
                    .collect();
                let joined = join(
                    full,
                    by_row,
                    on,
                    None,
                    JoinType::Left,
                    NullEquality::NullEqualsNull,
                )?;
                (joined, coalesce(vec![Expr::Column(mean), lit(0.0_f64)]))
            }
        };
        let mut exprs: Vec<Expr> = columns
            .iter()
            .cloned()
            .map(|c| Expr::Column(c.clone()).alias(c.name))
            .collect();
        exprs.push(amount.alias(t.name.clone()));
        let plan = LogicalPlanBuilder::from(rows)
            .project(exprs)?
            .alias(scan.table_name.clone())?
            .build()?;
        let width = columns.len();
        let (plan, tangents) = match &scan.projection {
            None => {
                let mut tangents = vec![None; width];
                tangents[moved] = Some(t);
                (plan, tangents)
            }
            Some(kept) => {
                let mut selected = kept.clone();
                selected.push(width);
                let tangents = kept
                    .iter()
                    .map(|&k| (k == moved).then(|| t.clone()))
                    .collect();
                (
                    LogicalPlanBuilder::from(plan).select(selected)?.build()?,
                    tangents,
                )
            }
        };
        Ok(Dual::new(plan, tangents))
    }

    /// The tangent of `expr`, over `input`'s columns, or `None` where it is zero.
    fn push(&self, expr: &Expr, node_input: &DFSchema, input: &Dual) -> Result<Option<Expr>> {
        let seeds: Vec<(Column, Expr)> = node_input
            .columns()
            .into_iter()
            .zip(&input.tangents)
            .filter_map(|(c, t)| Some((c, Expr::Column(t.clone()?))))
            .collect();
        push_forward(expr, &seeds, input.plan.schema(), self.options)
    }

    fn projection(&mut self, p: &Projection, input: Dual) -> Result<Dual> {
        let mut exprs = p.expr.clone();
        let mut tangents = vec![];
        for e in &p.expr {
            match self.push(e, p.input.schema(), &input)? {
                Some(t) => {
                    let name = self.fresh();
                    exprs.push(t.alias(name.name.clone()));
                    tangents.push(Some(name));
                }
                None => tangents.push(None),
            }
        }
        let plan = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input.plan))?);
        Ok(Dual::new(plan, tangents))
    }

    fn join(&mut self, j: &Join, inputs: Vec<Dual>) -> Result<Dual> {
        let [left, right]: [Dual; 2] = inputs.try_into().expect("a join has two inputs");
        let kept: Vec<Option<Column>> = match j.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left.tangents.clone(),
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                right.tangents.clone()
            }
            _ => left
                .tangents
                .iter()
                .chain(&right.tangents)
                .cloned()
                .collect(),
        };
        let mut tangents = kept;
        tangents.resize(j.schema.fields().len(), None);
        let plan = LogicalPlan::Join(Join::try_new(
            Arc::new(left.plan),
            Arc::new(right.plan),
            j.on.clone(),
            j.filter.clone(),
            j.join_type,
            j.join_constraint,
            j.null_equality,
            j.null_aware,
        )?);
        Ok(Dual::new(plan, tangents))
    }

    fn aggregate(&mut self, node: &LogicalPlan, a: &Aggregate, input: Dual) -> Result<Dual> {
        if a.group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return fail!(
                UnsupportedOperation,
                "cannot carry a tangent through the grouping sets of `{}`",
                node.display()
            );
        }
        let schema = a.input.schema().as_ref().clone();
        let partition = a.group_expr.clone();
        let mut extrema = vec![];
        let mut tangent_aggregates = vec![];
        let mut tangents = vec![];
        for g in &a.group_expr {
            tangents.push(match self.push(g, &schema, &input)? {
                Some(t) => {
                    let name = self.fresh();
                    tangent_aggregates.push(avg(t).alias(name.name.clone()));
                    Some(name)
                }
                None => None,
            });
        }
        for e in &a.aggr_expr {
            let Some(call) = aggregate_call(e) else {
                return fail!(
                    UnsupportedOperation,
                    "cannot carry a tangent through `{e}` in `{}`",
                    node.display()
                );
            };
            let reduced = self.reduced(
                node,
                call.name,
                call.args,
                call.filter,
                call.distinct,
                &schema,
                &input,
                &partition,
                &mut extrema,
            )?;
            tangents.push(match reduced {
                Some((udaf, t)) => {
                    let name = self.fresh();
                    tangent_aggregates.push(
                        Expr::AggregateFunction(AggregateFunction::new_udf(
                            udaf,
                            vec![t],
                            false,
                            None,
                            vec![],
                            None,
                        ))
                        .alias(name.name.clone()),
                    );
                    Some(name)
                }
                None => None,
            });
        }
        let rows = with_windows(input.plan, extrema)?;
        let mut aggregates = a.aggr_expr.clone();
        aggregates.extend(tangent_aggregates);
        let plan = LogicalPlanBuilder::from(rows)
            .aggregate(a.group_expr.clone(), aggregates)?
            .build()?;
        Ok(Dual::new(plan, tangents))
    }

    /// The reduction of the tangents of one reduction `name(args)`: the
    /// aggregate to take over the rows, and what it takes.
    #[allow(clippy::too_many_arguments)]
    fn reduced(
        &mut self,
        node: &LogicalPlan,
        name: &str,
        args: &[Expr],
        filter: Option<&Expr>,
        distinct: bool,
        schema: &DFSchema,
        input: &Dual,
        partition: &[Expr],
        extrema: &mut Vec<Expr>,
    ) -> Result<Option<(Arc<datafusion_expr::AggregateUDF>, Expr)>> {
        let moving = args
            .iter()
            .map(|a| self.push(a, schema, input))
            .collect::<Result<Vec<_>>>()?;
        if moving.iter().all(Option::is_none) || name == "count" {
            return Ok(None);
        }
        let [arg] = args else {
            return fail!(
                UnsupportedOperation,
                "cannot carry a tangent through `{name}` of {} arguments in `{}`",
                args.len(),
                node.display()
            );
        };
        if distinct {
            return fail!(
                UnsupportedOperation,
                "cannot carry a tangent through DISTINCT `{name}` in `{}`",
                node.display()
            );
        }
        let t = moving[0].clone().expect("the one argument moves");
        let counted = match filter {
            Some(f) => f.clone().and(arg.clone().is_not_null()),
            None => arg.clone().is_not_null(),
        };
        let null = lit(ScalarValue::Float64(None));
        Ok(Some(match name {
            "sum" => (sum_udaf(), when(counted, t).otherwise(null)?),
            "avg" | "mean" => (avg_udaf(), when(counted, t).otherwise(null)?),
            "min" | "max" => {
                let udaf = if name == "min" {
                    min_udaf()
                } else {
                    max_udaf()
                };
                let extremum = self.fresh();
                extrema.push(
                    Expr::from(WindowFunction::new(
                        udaf,
                        vec![when(counted.clone(), arg.clone()).otherwise(lit(ScalarValue::Null))?],
                    ))
                    .partition_by(partition.to_vec())
                    .build()?
                    .alias(extremum.name.clone()),
                );
                let attains = counted.and(arg.clone().eq(Expr::Column(extremum)));
                (avg_udaf(), when(attains, t).otherwise(null)?)
            }
            other => {
                return fail!(
                    UnsupportedOperation,
                    "cannot carry a tangent through the aggregate function `{other}` in `{}`",
                    node.display()
                )
            }
        }))
    }

    fn window(&mut self, node: &LogicalPlan, w: &Window, input: Dual) -> Result<Dual> {
        let schema = w.input.schema().as_ref().clone();
        let width = schema.fields().len();
        // The node's own window values first, then their tangents, which
        // may read them (the extremum a row attains).
        let values = LogicalPlanBuilder::from(input.plan.clone())
            .window(w.window_expr.clone())?
            .build()?;
        let mut tangent_windows = vec![];
        let mut tangents = input.tangents.clone();
        for (k, e) in w.window_expr.iter().enumerate() {
            let Some(f) = window_function(e) else {
                tangents.push(None);
                continue;
            };
            let WindowFunctionDefinition::AggregateUDF(udaf) = &f.fun else {
                if f.params
                    .args
                    .iter()
                    .map(|a| self.push(a, &schema, &input))
                    .collect::<Result<Vec<_>>>()?
                    .iter()
                    .any(Option::is_some)
                {
                    return fail!(
                        UnsupportedOperation,
                        "cannot carry a tangent through the window function in `{e}`"
                    );
                }
                tangents.push(None);
                continue;
            };
            let value = Expr::Column(w.schema.columns()[width + k].clone());
            let pushed =
                self.window_tangent(node, udaf.name(), &f.params, &schema, &input, value)?;
            tangents.push(match pushed {
                Some(expr) => {
                    let name = self.fresh();
                    tangent_windows.push(expr.alias(name.name.clone()));
                    Some(name)
                }
                None => None,
            });
        }
        let plan = if tangent_windows.is_empty() {
            values
        } else {
            LogicalPlanBuilder::from(values)
                .window(tangent_windows)?
                .build()?
        };
        Ok(Dual::new(plan, tangents))
    }

    fn window_tangent(
        &mut self,
        node: &LogicalPlan,
        name: &str,
        params: &WindowFunctionParams,
        schema: &DFSchema,
        input: &Dual,
        value: Expr,
    ) -> Result<Option<Expr>> {
        let moving = params
            .args
            .iter()
            .map(|a| self.push(a, schema, input))
            .collect::<Result<Vec<_>>>()?;
        if moving.iter().all(Option::is_none) || name == "count" {
            return Ok(None);
        }
        let ([arg], false) = (params.args.as_slice(), params.distinct) else {
            return fail!(
                UnsupportedOperation,
                "cannot carry a tangent through the window `{name}` in `{}`",
                node.display()
            );
        };
        let t = moving[0].clone().expect("the one argument moves");
        let counted = match &params.filter {
            Some(f) => f.as_ref().clone().and(arg.clone().is_not_null()),
            None => arg.clone().is_not_null(),
        };
        let null = lit(ScalarValue::Float64(None));
        let (udaf, over, frame) = match name {
            "sum" => (
                sum_udaf(),
                when(counted, t).otherwise(null)?,
                params.window_frame.clone(),
            ),
            "avg" | "mean" => (
                avg_udaf(),
                when(counted, t).otherwise(null)?,
                params.window_frame.clone(),
            ),
            "min" | "max" if whole_partition(params) => (
                avg_udaf(),
                when(counted.and(arg.clone().eq(value)), t).otherwise(null)?,
                params.window_frame.clone(),
            ),
            other => {
                return fail!(
                    UnsupportedOperation,
                    "cannot carry a tangent through the window `{other}` in `{}`",
                    node.display()
                )
            }
        };
        Ok(Some(Expr::from(WindowFunction {
            fun: WindowFunctionDefinition::AggregateUDF(udaf),
            params: WindowFunctionParams {
                args: vec![over],
                partition_by: params.partition_by.clone(),
                order_by: params.order_by.clone(),
                window_frame: frame,
                filter: None,
                null_treatment: params.null_treatment,
                distinct: false,
            },
        })))
    }

    fn union(&mut self, u: &Union, inputs: Vec<Dual>) -> Result<Dual> {
        let width = u.schema.fields().len();
        let moving: Vec<bool> = (0..width)
            .map(|j| inputs.iter().any(|d| d.tangents[j].is_some()))
            .collect();
        let names: Vec<Option<Column>> = moving.iter().map(|m| m.then(|| self.fresh())).collect();
        let mut union: Option<LogicalPlanBuilder> = None;
        for dual in inputs {
            let mut exprs: Vec<Expr> = dual.plan.schema().columns()[..width]
                .iter()
                .cloned()
                .map(Expr::Column)
                .collect();
            for (j, name) in names.iter().enumerate() {
                let Some(name) = name else { continue };
                let t = match &dual.tangents[j] {
                    Some(t) => Expr::Column(t.clone()),
                    None => lit(0.0_f64),
                };
                exprs.push(t.alias(name.name.clone()));
            }
            let branch = LogicalPlanBuilder::from(dual.plan)
                .project(exprs)?
                .build()?;
            union = Some(match union {
                None => LogicalPlanBuilder::from(branch),
                Some(u) => u.union(branch)?,
            });
        }
        Ok(Dual::new(
            union.expect("a union has inputs").build()?,
            names,
        ))
    }
}

fn one(mut inputs: Vec<Dual>) -> Dual {
    inputs.remove(0)
}

/// `plan` with the window values `windows` added, if any.
fn with_windows(plan: LogicalPlan, windows: Vec<Expr>) -> Result<LogicalPlan> {
    if windows.is_empty() {
        return Ok(plan);
    }
    LogicalPlanBuilder::from(plan).window(windows)?.build()
}

/// The aggregate function an output expression calls.
struct Call<'a> {
    name: &'a str,
    args: &'a [Expr],
    filter: Option<&'a Expr>,
    distinct: bool,
}

fn aggregate_call(expr: &Expr) -> Option<Call<'_>> {
    match expr {
        Expr::AggregateFunction(f) => Some(Call {
            name: f.func.name(),
            args: &f.params.args,
            filter: f.params.filter.as_deref(),
            distinct: f.params.distinct,
        }),
        Expr::Alias(a) => aggregate_call(&a.expr),
        _ => None,
    }
}

fn window_function(expr: &Expr) -> Option<&WindowFunction> {
    match expr {
        Expr::WindowFunction(f) => Some(f),
        Expr::Alias(a) => window_function(&a.expr),
        _ => None,
    }
}

/// Whether the frame is the whole partition.
fn whole_partition(params: &WindowFunctionParams) -> bool {
    let frame = &params.window_frame;
    matches!(&frame.start_bound, WindowFrameBound::Preceding(v) if v.is_null())
        && matches!(&frame.end_bound, WindowFrameBound::Following(v) if v.is_null())
}
