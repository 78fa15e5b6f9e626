//! Running plans of this library inside a stock PyPI `datafusion` host.
//!
//! The host accepts table providers as datafusion-ffi capsules and runs the
//! plans they return, but it hands out none of its own tables. So a
//! provider of ours reads a host table by asking the host, through Python,
//! for that table's rows as an Arrow stream, afresh each time it runs
//! ([`HostTable`]), and plans what it computes with a session of its own, on
//! a runtime of its own ([`HostedProvider`]).

use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use datafusion::catalog::{Session, TableProvider};
use datafusion::execution::{
    SendableRecordBatchStream, SessionState, SessionStateBuilder, TaskContext,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::prelude::SessionConfig;
use datafusion_autograd_ffi::panics::catch_panic;
use datafusion_common::stats::Precision;
use datafusion_common::{internal_err, DataFusionError, Result, Statistics};
use datafusion_expr::{Expr, TableType};
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The runtime this library's plans run on inside a host: the host's own
/// tokio is another copy of the library, whose workers ours cannot use.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("datafusion-autograd")
            .enable_all()
            .build()
            .expect("a tokio runtime for datafusion_autograd")
    });
    &RUNTIME
}

/// A session of ours for planning inside a host: DataFusion's defaults, with
/// the host's parallelism and batch size.
fn planning_state(host: &dyn Session) -> SessionState {
    static BASE: LazyLock<SessionState> =
        LazyLock::new(|| SessionStateBuilder::new().with_default_features().build());
    let config = SessionConfig::new()
        .with_target_partitions(host.config().target_partitions())
        .with_batch_size(host.config().batch_size());
    SessionStateBuilder::new_from_existing(BASE.clone())
        .with_config(config)
        .build()
}

/// A provider of ours as the capsule a host's `register_table` and
/// `read_table` take; `session` is the host's `SessionContext`, whose
/// extension codec decodes what the host pushes down.
pub(crate) fn export<'py>(
    py: Python<'py>,
    provider: Arc<dyn TableProvider>,
    session: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyCapsule>> {
    let codec = session.call_method0("__datafusion_logical_extension_codec__")?;
    let codec = codec.cast_into::<PyCapsule>().map_err(PyErr::from)?;
    let pointer = codec.pointer_checked(Some(c"datafusion_logical_extension_codec"))?;
    // SAFETY: a "datafusion_logical_extension_codec" capsule holds an
    // FFI_LogicalExtensionCodec, valid while the capsule lives; it is cloned
    // (datafusion-ffi's own reference counting) before the capsule goes.
    let codec = unsafe { &*(pointer.as_ptr() as *const FFI_LogicalExtensionCodec) }.clone();
    let hosted: Arc<dyn TableProvider> = Arc::new(HostedProvider(provider));
    let ffi = FFI_TableProvider::new_with_ffi_codec(
        hosted,
        false,
        Some(runtime().handle().clone()),
        codec,
    );
    PyCapsule::new_with_value(py, ffi, c"datafusion_table_provider")
}

/// A provider of ours, planned in a session of ours and handed to the host as
/// one plan without children: the host's optimizer would otherwise place its
/// own operators between ours, and they would run without our runtime.
#[derive(Debug)]
struct HostedProvider(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for HostedProvider {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = planning_state(session);
        let provider = Arc::clone(&self.0);
        let projection = projection.cloned();
        let plan = runtime()
            .spawn(async move { provider.scan(&state, projection.as_ref(), &[], None).await })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        Ok(Arc::new(Opaque::new(plan)))
    }
}

/// A plan of ours as the host sees it: its root, without children, in one
/// partition. Every partition the host executes crosses FFI with the host's
/// task context, which datafusion-ffi converts whole — the host's registry of
/// functions, each function wrapped anew — before our plan runs (about
/// 0.8 ms each); the partitions of our plan below still run in parallel.
#[derive(Debug)]
struct Opaque {
    plan: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl Opaque {
    fn new(plan: Arc<dyn ExecutionPlan>) -> Self {
        let plan: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(plan))
        } else {
            plan
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(plan.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            plan,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for Opaque {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DataFusionAutogradExec: {}", self.plan.name())
    }
}

impl ExecutionPlan for Opaque {
    fn name(&self) -> &str {
        "DataFusionAutogradExec"
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
            internal_err!("DataFusionAutogradExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.plan.execute(partition, context)
    }
}

/// A table of the host, read through Python: `rows(columns)` returns an
/// object with `__arrow_c_stream__` (the host's DataFrame of those columns),
/// called each time the table is read.
pub(crate) struct HostTable {
    name: String,
    schema: SchemaRef,
    rows: Arc<Py<PyAny>>,
    size: Option<HostTableSize>,
}

/// What the host's planner knows of a table's size, without reading it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostTableSize {
    pub rows: usize,
    pub bytes: usize,
    /// Whether the counts are exact (an in-memory table) or estimates.
    pub exact: bool,
}

impl HostTable {
    pub fn new(
        name: String,
        schema: SchemaRef,
        rows: Py<PyAny>,
        size: Option<HostTableSize>,
    ) -> Self {
        Self {
            name,
            schema,
            rows: Arc::new(rows),
            size,
        }
    }

    /// The statistics of a scan of `columns`: the table's row count, and its
    /// size shared evenly among its columns. Without them our planner takes
    /// every host table for a large one, and partitions every join by hash
    /// where the other side could be broadcast.
    fn statistics(&self, columns: &Schema) -> Statistics {
        let mut statistics = Statistics::new_unknown(columns);
        if let Some(size) = self.size {
            let rows = if size.exact {
                Precision::Exact(size.rows)
            } else {
                Precision::Inexact(size.rows)
            };
            let share = size.bytes * columns.fields().len() / self.schema.fields().len().max(1);
            statistics = statistics
                .with_num_rows(rows)
                .with_total_byte_size(Precision::Inexact(share));
        }
        statistics
    }
}

impl fmt::Debug for HostTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostTable({})", self.name)
    }
}

#[async_trait]
impl TableProvider for HostTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => Arc::clone(&self.schema),
        };
        Ok(Arc::new(HostScan {
            name: self.name.clone(),
            rows: Arc::clone(&self.rows),
            statistics: Arc::new(self.statistics(&schema)),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(&schema)),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            schema,
        }))
    }
}

/// Reads a host table's columns: a thread of our runtime's blocking pool asks
/// Python for the stream (the host releases the interpreter while it runs a
/// query, and a tokio worker of either runtime must not wait on it) and reads
/// it. The pool keeps its threads between reads; a thread made for each read
/// cost about 0.2 ms of it.
struct HostScan {
    name: String,
    rows: Arc<Py<PyAny>>,
    statistics: Arc<Statistics>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for HostScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostScan({})", self.name)
    }
}

impl DisplayAs for HostScan {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|c| c.name().as_str())
            .collect();
        write!(
            f,
            "HostScan: table={}, columns=[{}]",
            self.name,
            columns.join(", ")
        )
    }
}

impl ExecutionPlan for HostScan {
    fn name(&self) -> &str {
        "HostScan"
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
            internal_err!("HostScan has no children")
        }
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        // One partition: the whole table's statistics are its partition's.
        Ok(Arc::clone(&self.statistics))
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
        let (name, rows, schema) = (
            self.name.clone(),
            Arc::clone(&self.rows),
            Arc::clone(&self.schema),
        );
        // Detached: the task ends when the table is read or the reader stops.
        drop(runtime().spawn_blocking(move || {
            // A panic would otherwise end the stream early, as a shorter table.
            let what = format!("reading the host table {name}");
            if let Err(panic) = catch_panic(&what, || send_rows(&name, &rows, &schema, &sender)) {
                let _ = sender.blocking_send(Err(DataFusionError::External(panic.into())));
            }
        }));
        let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// Sends the rows of `name`'s columns of `schema` to `sender`, batch by
/// batch, until they end or the reader stops reading.
fn send_rows(
    name: &str,
    rows: &Py<PyAny>,
    schema: &SchemaRef,
    sender: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
) {
    let batches = match open(name, rows, schema) {
        Ok(reader) => reader,
        Err(e) => {
            let _ = sender.blocking_send(Err(e));
            return;
        }
    };
    for batch in batches {
        let batch = batch.map_err(DataFusionError::from).and_then(|b| {
            Ok(RecordBatch::try_new(
                Arc::clone(schema),
                b.columns().to_vec(),
            )?)
        });
        if sender.blocking_send(batch).is_err() {
            break; // the reader stopped reading
        }
    }
}

/// The stream of `name`'s columns of `schema`, asked of the host.
fn open(name: &str, rows: &Py<PyAny>, schema: &SchemaRef) -> Result<ArrowArrayStreamReader> {
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let stream = Python::attach(|py| -> PyResult<FFI_ArrowArrayStream> {
        let rows = rows.bind(py).call1((columns,))?;
        let capsule = rows
            .call_method0("__arrow_c_stream__")?
            .cast_into::<PyCapsule>()?;
        let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
        // SAFETY: an "arrow_array_stream" capsule holds an ArrowArrayStream;
        // from_raw moves it out and leaves the capsule's released (its
        // destructor then does nothing), as the C stream interface asks.
        Ok(
            unsafe {
                FFI_ArrowArrayStream::from_raw(pointer.as_ptr() as *mut FFI_ArrowArrayStream)
            },
        )
    })
    .map_err(|e| DataFusionError::External(format!("reading the host table {name}: {e}").into()))?;
    Ok(ArrowArrayStreamReader::try_new(stream)?)
}
