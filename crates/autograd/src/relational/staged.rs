//! A gradient's plan in stages.
//!
//! The reverse pass reads some relations more than once: the input of every
//! reduction (by the reduction, and again by its reverse rule) and the
//! contributions that reach both sides of a join. A plan is a tree, so as one
//! plan those relations would be computed once per reading, and the readings
//! multiply with every reduction and join on the way to the parameter. The
//! gradient is therefore a sequence of stages, each a plan that reads the
//! stages before it through a scan of a [`StageSource`], and results that read
//! them too. How stages are kept is the host's affair: computed once when
//! first read (`datafusion_autograd`'s table provider), common table
//! expressions (SQL text), or written out again where they are read
//! ([`Staged::inline`], for hosts that take one plan of built-in operators).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Result, TableReference};
use datafusion_expr::{LogicalPlan, LogicalPlanBuilder, TableScan, TableSource, TableType};

/// One stage: a relation the gradient reads more than once.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The name its scans read it by, unique in the process.
    pub name: String,
    pub plan: LogicalPlan,
}

/// Where a host's table is read from: its source, if the host gives one.
pub type Sources<'a> = dyn Fn(&TableReference) -> Result<Option<Arc<dyn TableSource>>> + 'a;

/// Gradients as stages and results, each a plan that may scan the stages
/// before it.
#[derive(Clone, Debug)]
pub struct Staged {
    /// In the order they must be computed.
    pub stages: Vec<Stage>,
    /// One per parameter, in the order asked for: every row of the
    /// parameter's table, all its columns, and `grad`.
    pub results: Vec<LogicalPlan>,
}

/// The source a scan of a stage reads: the stage's name and schema.
#[derive(Debug)]
pub struct StageSource {
    name: String,
    schema: SchemaRef,
}

impl StageSource {
    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stage `plan` will be read through, when `source` is a stage's source.
    pub fn of(source: &Arc<dyn TableSource>) -> Option<&StageSource> {
        (source.as_ref() as &dyn Any).downcast_ref::<StageSource>()
    }
}

impl TableSource for StageSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
}

/// A scan of the stage `name` that `plan` computes.
pub(crate) fn stage_scan(name: &str, plan: &LogicalPlan) -> Result<LogicalPlan> {
    let source = StageSource {
        name: name.to_string(),
        schema: Arc::new(plan.schema().as_arrow().clone()),
    };
    LogicalPlanBuilder::scan(name, Arc::new(source), None)?.build()
}

impl Staged {
    /// The output schema of result `k`.
    pub fn schema(&self, k: usize) -> SchemaRef {
        Arc::new(self.results[k].schema().as_arrow().clone())
    }

    /// Result `k` as one plan of built-in operators: every scan of a stage
    /// replaced by the stage's plan, so what a stage computes is computed
    /// once per reading.
    pub fn inline(&self, k: usize) -> Result<LogicalPlan> {
        let mut inlined: HashMap<&str, LogicalPlan> = HashMap::new();
        for stage in &self.stages {
            let plan = replace_stages(&stage.plan, &inlined)?;
            inlined.insert(stage.name.as_str(), plan);
        }
        replace_stages(&self.results[k], &inlined)
    }

    /// The same plans with every scan of a table (not of a stage) reading
    /// the source `sources` gives for it, where it gives one: for a host
    /// whose tables the loss was planned against by their schemas alone.
    pub fn with_sources(&self, sources: &Sources) -> Result<Staged> {
        let bind = |plan: &LogicalPlan| {
            plan.clone()
                .transform_up_with_subqueries(|node| {
                    let LogicalPlan::TableScan(scan) = &node else {
                        return Ok(Transformed::no(node));
                    };
                    if StageSource::of(&scan.source).is_some() {
                        return Ok(Transformed::no(node));
                    }
                    let Some(source) = sources(&scan.table_name)? else {
                        return Ok(Transformed::no(node));
                    };
                    Ok(Transformed::yes(LogicalPlan::TableScan(
                        TableScan::try_new(
                            scan.table_name.clone(),
                            source,
                            scan.projection.clone(),
                            scan.filters.clone(),
                            scan.fetch,
                        )?,
                    )))
                })
                .map(|t| t.data)
        };
        Ok(Staged {
            stages: self
                .stages
                .iter()
                .map(|s| {
                    Ok(Stage {
                        name: s.name.clone(),
                        plan: bind(&s.plan)?,
                    })
                })
                .collect::<Result<_>>()?,
            results: self.results.iter().map(bind).collect::<Result<_>>()?,
        })
    }
}

/// `plan` with every scan of a stage replaced by `stages`' plan for it.
fn replace_stages(plan: &LogicalPlan, stages: &HashMap<&str, LogicalPlan>) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(stage) = StageSource::of(&scan.source) else {
                return Ok(Transformed::no(node));
            };
            let body = stages[stage.name()].clone();
            let mut builder = LogicalPlanBuilder::from(body).alias(scan.table_name.clone())?;
            if let Some(projection) = &scan.projection {
                builder = builder.select(projection.iter().copied())?;
            }
            Ok(Transformed::yes(builder.build()?))
        })
        .map(|t| t.data)
}

/// Whether `plan` is as cheap to compute again as to read kept: it computes
/// rows from rows alone — scans (of stages too), projections, filters, joins
/// — with no volatile expression, so every reading gives the same values.
/// Anything that reduces or orders (aggregates, windows, sorts, limits,
/// DISTINCT) is not.
pub(crate) fn computed_again(plan: &LogicalPlan) -> Result<bool> {
    let mut cheap = true;
    plan.apply_with_subqueries(|node| {
        cheap = match node {
            // A scan that stops early may stop at other rows each time.
            LogicalPlan::TableScan(scan) => scan.fetch.is_none(),
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::SubqueryAlias(_) => true,
            _ => false,
        } && !node.expressions().iter().any(|e| e.is_volatile());
        Ok(if cheap {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(cheap)
}
