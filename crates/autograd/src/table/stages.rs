//! Running a gradient's stages inside one execution: each stage is planned
//! with the result, and computed the first time any reader asks for its
//! rows, then read from memory by every reader after.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::provider_as_source;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    collect_partitioned, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion_common::arrow::array::RecordBatch;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{DataFusionError, Result, Statistics};
use datafusion_expr::{Expr, LogicalPlan, TableScan, TableType};
use futures::future::{BoxFuture, Shared};
use futures::{stream, FutureExt, StreamExt, TryStreamExt};

use crate::relational::{StageSource, Staged};

/// A stage's rows by partition, or why they could not be computed.
type Rows = std::result::Result<Arc<Vec<Vec<RecordBatch>>>, Arc<DataFusionError>>;

/// What a stage's computation, or a result's stream, keeps alive while it
/// runs: a statement's use of kept plans.
pub(crate) type Hold = Arc<dyn std::any::Any + Send + Sync>;

/// One stage of one execution: its physical plan, and its rows once computed.
pub(crate) struct StageSlot {
    name: String,
    plan: Arc<dyn ExecutionPlan>,
    /// The computation, started by the first reader and shared by all: it
    /// runs as a task of its own, so a reader that stops waiting (its query
    /// done early, or cancelled) never makes another start it again.
    rows: Mutex<Option<Shared<BoxFuture<'static, Rows>>>>,
    /// Kept alive by the computation, which may outlive every reader.
    hold: OnceLock<Hold>,
}

impl StageSlot {
    pub(crate) fn new(name: String, plan: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            name,
            plan,
            rows: Mutex::new(None),
            hold: OnceLock::new(),
        }
    }

    /// Keeps `hold` alive while the stage is computed.
    pub(crate) fn hold(&self, hold: Hold) {
        let _ = self.hold.set(hold);
    }

    /// The stage's physical plan.
    pub(crate) fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }

    /// The stage's rows, by partition, computed once.
    async fn rows(&self, context: Arc<TaskContext>) -> Result<Arc<Vec<Vec<RecordBatch>>>> {
        let computation = {
            let mut rows = self.rows.lock().expect("a stage's lock is never poisoned");
            rows.get_or_insert_with(|| {
                let plan = Arc::clone(&self.plan);
                let name = self.name.clone();
                let hold = self.hold.get().cloned();
                let task = tokio::spawn(async move {
                    let _hold = hold;
                    collect_partitioned(plan, context).await
                });
                async move {
                    match task.await {
                        Ok(Ok(rows)) => Ok(Arc::new(rows)),
                        Ok(Err(e)) => Err(Arc::new(
                            e.context(format!("computing the gradient's stage {name}")),
                        )),
                        Err(e) => Err(Arc::new(DataFusionError::External(Box::new(e)))),
                    }
                }
                .boxed()
                .shared()
            })
            .clone()
        };
        computation.await.map_err(DataFusionError::Shared)
    }
}

impl fmt::Debug for StageSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StageSlot({})", self.name)
    }
}

/// Every stage of a gradient, by name.
pub(crate) type Slots = HashMap<String, Arc<StageSlot>>;

/// The physical plans of every stage of `staged`, in order, each reading the
/// slots before it. Planning computes nothing.
pub(crate) async fn plan_stages(session: &dyn Session, staged: &Staged) -> Result<Slots> {
    let mut slots = HashMap::new();
    for stage in &staged.stages {
        let plan = session
            .create_physical_plan(&bind(&stage.plan, &slots)?)
            .await?;
        let slot = Arc::new(StageSlot::new(stage.name.clone(), plan));
        slots.insert(stage.name.clone(), slot);
    }
    Ok(slots)
}

/// `plan` with its scans of stages reading `slots`.
pub(crate) fn bind(plan: &LogicalPlan, slots: &Slots) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(stage) = StageSource::of(&scan.source) else {
                return Ok(Transformed::no(node));
            };
            let Some(slot) = slots.get(stage.name()) else {
                return datafusion_common::internal_err!(
                    "the stage {} is read before it is planned",
                    stage.name()
                );
            };
            let table = Arc::new(StageTable {
                slot: Arc::clone(slot),
                schema: scan.source.schema(),
            });
            Ok(Transformed::yes(LogicalPlan::TableScan(
                TableScan::try_new(
                    scan.table_name.clone(),
                    provider_as_source(table),
                    scan.projection.clone(),
                    scan.filters.clone(),
                    scan.fetch,
                )?,
            )))
        })
        .map(|t| t.data)
}

/// A stage as a table: its scans read the slot.
#[derive(Debug)]
struct StageTable {
    slot: Arc<StageSlot>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StageTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(StageExec::new(
            Arc::clone(&self.slot),
            projection.cloned(),
        )?))
    }
}

/// Reads a stage's rows, computing them first if no reader has.
#[derive(Debug)]
pub(crate) struct StageExec {
    slot: Arc<StageSlot>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
    /// What the stage's own plan estimates of its rows, as inexact: the
    /// planner then weighs a stage against the relations it is joined with
    /// by the same estimates. Without any, a stage joined with a relation
    /// the planner thinks small (a join of tables it takes for a lookup)
    /// would be put on the probe side, and that relation, however large in
    /// fact, collected into the hash table.
    statistics: Arc<Statistics>,
}

impl StageExec {
    fn new(slot: Arc<StageSlot>, projection: Option<Vec<usize>>) -> Result<Self> {
        let full = slot.plan.schema();
        let schema = match &projection {
            Some(columns) => Arc::new(full.project(columns)?),
            None => full,
        };
        let partitions = slot.plan.properties().partitioning.partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        let statistics = Arc::unwrap_or_clone(slot.plan.partition_statistics(None)?)
            .to_inexact()
            .project(projection.as_ref());
        Ok(Self {
            slot,
            projection,
            properties: Arc::new(properties),
            statistics: Arc::new(statistics),
        })
    }
}

impl StageExec {
    /// The same read of the same stage, from `slots`.
    pub(crate) fn reading(&self, slots: &Slots) -> Result<Self> {
        let Some(slot) = slots.get(&self.slot.name) else {
            return datafusion_common::internal_err!(
                "the stage {} is read before it is planned",
                self.slot.name
            );
        };
        Self::new(Arc::clone(slot), self.projection.clone())
    }
}

impl DisplayAs for StageExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StageExec: stage={}", self.slot.name)?;
        if let Some(columns) = &self.projection {
            write!(f, ", projection={columns:?}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StageExec {
    fn name(&self) -> &str {
        "StageExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            datafusion_common::internal_err!("StageExec has no children")
        }
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        match partition {
            None => Ok(Arc::clone(&self.statistics)),
            Some(_) => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let slot = Arc::clone(&self.slot);
        let projection = self.projection.clone();
        let batches = async move {
            let rows = slot.rows(context).await?;
            let batches = rows.get(partition).cloned().unwrap_or_default();
            let batches = batches
                .into_iter()
                .map(move |b| match &projection {
                    Some(columns) => b.project(columns).map_err(DataFusionError::from),
                    None => Ok(b),
                })
                .collect::<Vec<_>>();
            Ok::<_, DataFusionError>(stream::iter(batches))
        };
        let stream = stream::once(batches).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream.boxed(),
        )))
    }
}
