//! A gradient's planned result as the host's plan holds it: one operator
//! without children, so that the host's physical optimizer, which runs over
//! every plan a table's scan returns, leaves the engine's plan as the engine
//! planned it (see `build_side`) and does not optimize it a second time.

use std::fmt;
use std::sync::Arc;

use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_common::{internal_err, Result, Statistics};
use futures::StreamExt;

use super::stages::Hold;

/// Runs `plan`, shown beneath it by `EXPLAIN`.
#[derive(Debug)]
pub(crate) struct GradientExec {
    plan: Arc<dyn ExecutionPlan>,
    /// Kept alive by every stream of the plan (see [`Hold`]).
    hold: Option<Hold>,
}

impl GradientExec {
    pub(crate) fn new(plan: Arc<dyn ExecutionPlan>, hold: Option<Hold>) -> Self {
        Self { plan, hold }
    }
}

impl DisplayAs for GradientExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GradientExec")?;
        let shown = match format {
            DisplayFormatType::Default => DisplayableExecutionPlan::new(self.plan.as_ref()),
            DisplayFormatType::Verbose => {
                DisplayableExecutionPlan::with_metrics(self.plan.as_ref())
            }
            DisplayFormatType::TreeRender => return Ok(()),
        };
        for line in shown.indent(false).to_string().lines() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for GradientExec {
    fn name(&self) -> &str {
        "GradientExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.plan.properties()
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
            internal_err!("GradientExec has no children")
        }
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.plan.partition_statistics(partition)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.plan.execute(partition, context)?;
        let Some(hold) = self.hold.clone() else {
            return Ok(stream);
        };
        let schema = stream.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.inspect(move |_| {
                let _ = &hold;
            }),
        )))
    }
}
