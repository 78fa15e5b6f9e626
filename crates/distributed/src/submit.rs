//! Physical-plan submission: the client plans a query down to its physical
//! plan and sends that, so that in-memory tables and the stages of
//! `gradient()` reach a stock scheduler and its executors.
//!
//! A logical plan that reads a `MemTable` or a gradient cannot be sent
//! (datafusion-proto has no encoding for custom tables). A physical plan
//! can carry rows: a `DataSourceExec` over `MemorySourceConfig` travels as
//! Arrow IPC (Ballista 54.1's `execute_physical_plan`). [`SubmittingPlanner`]
//! plans locally, replaces every leaf that datafusion-proto cannot encode by
//! its rows — computing them first, on the cluster where they come from a
//! plan of this planner — and submits the result. A gradient's stages are
//! such leaves: each is computed by a job of its own, its rows come back to
//! the client, and travel in the plans of the stages and the query that
//! read it. Every plan sent is one message, within the scheduler's gRPC
//! limit (16 MiB unless configured).
//!
//! Recursive CTEs are left as they are, and fail to encode: their
//! `WorkTableExec` is filled by the recursion as it runs.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::common::{not_impl_err, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    collect_partitioned, with_new_children_if_necessary, DisplayAs, DisplayFormatType,
    ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion_proto::physical_plan::{AsExecutionPlan, PhysicalExtensionCodec};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};

/// The operator of recursive CTEs that reads the recursion's last rows: not
/// computable on its own.
const WORK_TABLE: &str = "WorkTableExec";

/// The operator of recursive CTEs.
const RECURSIVE_QUERY: &str = "RecursiveQueryExec";

/// A query planner that plans here and submits physical plans to the
/// scheduler at `scheduler_url` (`http://host:port`).
#[derive(Debug)]
pub struct SubmittingPlanner {
    scheduler_url: String,
}

impl SubmittingPlanner {
    pub fn new(scheduler_url: String) -> Self {
        Self { scheduler_url }
    }
}

#[async_trait]
impl QueryPlanner for SubmittingPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &SessionState,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let local = DefaultPhysicalPlanner::default()
            .create_physical_plan(plan, state)
            .await?;
        refuse_recursion(&local)?;
        let codec = state.config().ballista_physical_extension_codec();
        Ok(Arc::new(SubmittedExec::new(
            self.scheduler_url.clone(),
            local,
            codec,
            state.session_id().to_string(),
        )))
    }
}

/// An error if `plan` holds a recursive CTE, which cannot be sent.
fn refuse_recursion(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    if plan.name() == RECURSIVE_QUERY {
        return not_impl_err!(
            "recursive CTEs do not run on a Ballista cluster: datafusion-proto 54 cannot encode \
             {RECURSIVE_QUERY} and {WORK_TABLE}; run the loop from the client, one query per \
             step, or on a local SessionContext"
        );
    }
    plan.children().into_iter().try_for_each(refuse_recursion)
}

/// An error if the encoded `plan` is larger than `limit` bytes, the largest
/// message the client sends (and, by default, the scheduler reads).
fn check_size(
    plan: &Arc<dyn ExecutionPlan>,
    codec: &dyn PhysicalExtensionCodec,
    limit: usize,
) -> Result<()> {
    let mut encoded = Vec::new();
    PhysicalPlanNode::try_from_physical_plan(Arc::clone(plan), codec)?.try_encode(&mut encoded)?;
    if encoded.len() > limit {
        return plan_err!(
            "the plan to send to the scheduler is {} bytes, more than the {limit} bytes of a \
             gRPC message (ballista.client.grpc_max_message_size, and the scheduler's \
             grpc_server_max_decoding_message_size): the rows of in-memory tables and of \
             gradient stages travel inside it; write large tables as Parquet or CSV files the \
             executors read",
            encoded.len()
        );
    }
    Ok(())
}

/// `plan` with every leaf that cannot be encoded replaced by its rows.
fn with_rows<'a>(
    plan: Arc<dyn ExecutionPlan>,
    context: &'a Arc<TaskContext>,
    codec: &'a dyn PhysicalExtensionCodec,
) -> BoxFuture<'a, Result<Arc<dyn ExecutionPlan>>> {
    async move {
        let children = plan.children();
        if children.is_empty() {
            if plan.name() == WORK_TABLE || encodes(&plan, codec) {
                return Ok(plan);
            }
            let rows = collect_partitioned(Arc::clone(&plan), Arc::clone(context)).await?;
            let rows: Arc<dyn ExecutionPlan> =
                MemorySourceConfig::try_new_exec(&rows, plan.schema(), None)?;
            return Ok(rows);
        }
        let mut replaced = Vec::with_capacity(children.len());
        for child in children {
            replaced.push(with_rows(Arc::clone(child), context, codec).await?);
        }
        with_new_children_if_necessary(plan, replaced)
    }
    .boxed()
}

/// Whether datafusion-proto encodes the leaf `plan`.
fn encodes(plan: &Arc<dyn ExecutionPlan>, codec: &dyn PhysicalExtensionCodec) -> bool {
    PhysicalPlanNode::try_from_physical_plan(Arc::clone(plan), codec).is_ok()
}

/// A physical plan that runs on the cluster: one partition, the stream of
/// its results. Its leaves that cannot be encoded are computed, and the plan
/// sent, when it is executed: planning (and `EXPLAIN`) computes nothing.
pub struct SubmittedExec {
    scheduler_url: String,
    plan: Arc<dyn ExecutionPlan>,
    codec: Arc<dyn PhysicalExtensionCodec>,
    session_id: String,
    properties: Arc<PlanProperties>,
}

impl SubmittedExec {
    fn new(
        scheduler_url: String,
        plan: Arc<dyn ExecutionPlan>,
        codec: Arc<dyn PhysicalExtensionCodec>,
        session_id: String,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(plan.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            scheduler_url,
            plan,
            codec,
            session_id,
            properties,
        }
    }

    /// The plan planned in the client, before its leaves that cannot be
    /// encoded are replaced by their rows.
    pub fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }
}

impl fmt::Debug for SubmittedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubmittedExec({})", self.scheduler_url)
    }
}

impl DisplayAs for SubmittedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SubmittedExec: scheduler={}", self.scheduler_url)
    }
}

impl ExecutionPlan for SubmittedExec {
    fn name(&self) -> &str {
        "SubmittedExec"
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
            datafusion::common::internal_err!("SubmittedExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return datafusion::common::internal_err!(
                "SubmittedExec has one partition, not {partition}"
            );
        }
        let config = context.session_config().clone();
        let (url, plan) = (self.scheduler_url.clone(), Arc::clone(&self.plan));
        let (codec, session_id) = (Arc::clone(&self.codec), self.session_id.clone());
        let submitted = async move {
            let ballista = config.ballista_config();
            let plan = with_rows(plan, &context, codec.as_ref()).await?;
            check_size(
                &plan,
                codec.as_ref(),
                ballista.grpc_client_max_message_size(),
            )?;
            execute_physical_plan::<PhysicalPlanNode>(
                url,
                &ballista,
                plan,
                codec.as_ref(),
                session_id,
                config,
            )
            .await
        };
        let stream = futures::stream::once(submitted).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.plan.schema(),
            stream.boxed(),
        )))
    }
}
