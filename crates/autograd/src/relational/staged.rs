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
use datafusion_common::tree_node::{Transformed, TreeNodeRecursion};
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

/// The source a scan of a table is to read, where there is one to give.
pub(crate) type ScanSources<'a> = dyn Fn(&TableScan) -> Result<Option<Arc<dyn TableSource>>> + 'a;

/// Gradients as stages and results, each a plan that may scan the stages
/// before it.
#[derive(Clone, Debug)]
pub struct Staged {
    /// In the order they must be computed.
    pub stages: Vec<Stage>,
    /// One per parameter, in the order asked for: every row of the
    /// parameter's table, all its columns, and `grad`; from
    /// [`gradients_and_loss`](super::gradients_and_loss), then the loss's row.
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

    /// The same gradients with every stage that one scan reads written out
    /// where it is read, and every stage that none reads left out. A stage
    /// exists so that what several readers read is computed once; read once,
    /// keeping it only adds a plan to plan, a barrier at which its rows wait
    /// whole, and the memory that holds them.
    pub(crate) fn read_once_inlined(self) -> Result<Staged> {
        let mut reads: HashMap<String, usize> = HashMap::new();
        for result in &self.results {
            count_reads(result, &mut reads)?;
        }
        // From the last stage back: a stage's readers all come after it, so
        // its reads are known when it is reached; one that is left out reads
        // nothing.
        for stage in self.stages.iter().rev() {
            if reads.get(&stage.name).copied().unwrap_or(0) > 0 {
                count_reads(&stage.plan, &mut reads)?;
            }
        }
        let mut inlined: HashMap<&str, LogicalPlan> = HashMap::new();
        let mut stages = vec![];
        for stage in &self.stages {
            let plan = replace_stages(&stage.plan, &inlined)?;
            match reads.get(&stage.name).copied().unwrap_or(0) {
                0 => {}
                1 => {
                    inlined.insert(stage.name.as_str(), plan);
                }
                _ => stages.push(Stage {
                    name: stage.name.clone(),
                    plan,
                }),
            }
        }
        let results = self
            .results
            .iter()
            .map(|result| replace_stages(result, &inlined))
            .collect::<Result<_>>()?;
        Ok(Staged { stages, results })
    }

    /// The same plans with every scan of a table (not of a stage) reading
    /// the source `sources` gives for it, where it gives one: for a host
    /// whose tables the loss was planned against by their schemas alone.
    pub fn with_sources(&self, sources: &Sources) -> Result<Staged> {
        self.with_scans(&|scan| sources(&scan.table_name))
    }

    /// The same plans with every scan of a table (not of a stage) reading
    /// the source `source` gives for that scan, where it gives one.
    pub(crate) fn with_scans(&self, source: &ScanSources) -> Result<Staged> {
        let bind = |plan: &LogicalPlan| {
            plan.clone()
                .transform_up_with_subqueries(|node| {
                    let LogicalPlan::TableScan(scan) = &node else {
                        return Ok(Transformed::no(node));
                    };
                    if StageSource::of(&scan.source).is_some() {
                        return Ok(Transformed::no(node));
                    }
                    let Some(source) = source(scan)? else {
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

    /// The table (not stage) every scan in the plans reads, subqueries
    /// included: its name and source.
    pub(crate) fn table_sources(&self) -> Result<Vec<(TableReference, Arc<dyn TableSource>)>> {
        let mut sources = vec![];
        for plan in self.stages.iter().map(|s| &s.plan).chain(&self.results) {
            plan.apply_with_subqueries(|node| {
                if let LogicalPlan::TableScan(scan) = node {
                    if StageSource::of(&scan.source).is_none() {
                        sources.push((scan.table_name.clone(), Arc::clone(&scan.source)));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(sources)
    }
}

/// Adds to `reads` the scans of each stage in `plan`.
fn count_reads(plan: &LogicalPlan, reads: &mut HashMap<String, usize>) -> Result<()> {
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Some(stage) = StageSource::of(&scan.source) {
                *reads.entry(stage.name().to_string()).or_default() += 1;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

/// `plan` with every scan of a stage in `stages` replaced by its plan there.
fn replace_stages(plan: &LogicalPlan, stages: &HashMap<&str, LogicalPlan>) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(body) = StageSource::of(&scan.source).and_then(|s| stages.get(s.name()))
            else {
                return Ok(Transformed::no(node));
            };
            let body = body.clone();
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
