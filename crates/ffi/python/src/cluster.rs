//! A Ballista 54.1 cluster from Python: the client session (markers and
//! `gradient()` planned here, physical plans submitted to a stock
//! scheduler), and the scheduler and executor servers that
//! `datafusion_autograd.cluster.LocalCluster` runs as processes.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use ballista::prelude::SessionConfigExt;
use datafusion::arrow::array::{RecordBatch, RecordBatchIterator, StructArray};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use datafusion::arrow::ffi_stream::FFI_ArrowArrayStream;
use datafusion::datasource::MemTable;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, ParquetReadOptions, SessionConfig, SessionContext,
};
use datafusion_autograd::error_kind;
use datafusion_autograd_distributed::{client, process};
use datafusion_autograd_ffi::panics::catch_panic;
use datafusion_common::DataFusionError;
use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::py_err;

create_exception!(
    _native,
    ClusterError,
    PyRuntimeError,
    "A cluster could not be reached, or failed to run a query (the message says which and why)."
);

/// Stack size of the client's threads: unoptimized builds need more than
/// tokio's 2 MiB to plan and encode some plans.
const STACK_SIZE: usize = 16 * 1024 * 1024;

/// The runtime the cluster clients plan and wait on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("datafusion-autograd-cluster")
            .thread_stack_size(STACK_SIZE)
            .enable_all()
            .build()
            .expect("a tokio runtime for datafusion_autograd's cluster client")
    });
    &RUNTIME
}

/// The Python exception for `e`: the derivative's own kinds keep their
/// classes, anything else is a `ClusterError`.
fn cluster_err(e: DataFusionError) -> PyErr {
    if error_kind(&e).is_some() {
        py_err(e)
    } else {
        ClusterError::new_err(e.to_string().replace("External error: ", ""))
    }
}

/// Runs `task` on the client's runtime without the GIL, and waits: its
/// errors and panics become Python exceptions.
fn run<T: Send + 'static>(
    py: Python<'_>,
    what: &str,
    task: impl std::future::Future<Output = datafusion_common::Result<T>> + Send + 'static,
) -> PyResult<T> {
    let joined = py.detach(|| catch_panic(what, || runtime().block_on(runtime().spawn(task))));
    match joined {
        Err(panic) => Err(ClusterError::new_err(panic)),
        Ok(Err(join)) => Err(ClusterError::new_err(format!("{what} failed: {join}"))),
        Ok(Ok(result)) => result.map_err(cluster_err),
    }
}

/// A session on a Ballista cluster: it plans here — markers, `gradient()`
/// — and submits physical plans to the scheduler, in-memory tables and
/// gradient stages carried in them.
#[pyclass(module = "datafusion_autograd._native", frozen)]
pub(crate) struct ClusterContext {
    ctx: SessionContext,
    url: String,
}

/// Connects to the Ballista scheduler at `url` (`df://host:port`). The
/// session's partitions per scan are `target_partitions` (DataFusion's
/// default, the number of cores, when not given).
#[pyfunction]
#[pyo3(signature = (url, target_partitions=None))]
pub(crate) fn cluster_connect(
    py: Python<'_>,
    url: String,
    target_partitions: Option<usize>,
) -> PyResult<ClusterContext> {
    let mut config = SessionConfig::new_with_ballista();
    if let Some(n) = target_partitions {
        if n == 0 {
            return Err(ClusterError::new_err(
                "target_partitions must be at least 1",
            ));
        }
        config = config.with_target_partitions(n);
    }
    let at = url.clone();
    let ctx = run(py, "connect", async move {
        client::connect_submitting_plans(&at, config).await
    })?;
    Ok(ClusterContext { ctx, url })
}

#[pymethods]
impl ClusterContext {
    /// The scheduler's address, `df://host:port`.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Plans `query` (grad/jvp/vjp differentiated here, `gradient()` as a
    /// table); DDL runs at once, a query when its result is asked for.
    fn sql(&self, py: Python<'_>, query: String) -> PyResult<ClusterFrame> {
        let ctx = self.ctx.clone();
        let frame = run(py, "sql", async move { ctx.sql(&query).await })?;
        Ok(ClusterFrame { frame })
    }

    /// The table or view `name`.
    fn table(&self, py: Python<'_>, name: String) -> PyResult<ClusterFrame> {
        let ctx = self.ctx.clone();
        let frame = run(py, "table", async move { ctx.table(name.as_str()).await })?;
        Ok(ClusterFrame { frame })
    }

    /// Registers the Parquet file or directory `path` (read by the
    /// executors: the path must be the same there).
    fn register_parquet(&self, py: Python<'_>, name: String, path: String) -> PyResult<()> {
        let ctx = self.ctx.clone();
        run(py, "register_parquet", async move {
            ctx.register_parquet(name.as_str(), &path, ParquetReadOptions::default())
                .await
        })
    }

    /// Registers the CSV file or directory `path` (read by the executors).
    #[pyo3(signature = (name, path, has_header=true))]
    fn register_csv(
        &self,
        py: Python<'_>,
        name: String,
        path: String,
        has_header: bool,
    ) -> PyResult<()> {
        let ctx = self.ctx.clone();
        run(py, "register_csv", async move {
            let options = CsvReadOptions::new().has_header(has_header);
            ctx.register_csv(name.as_str(), &path, options).await
        })
    }

    /// Registers in-memory rows as the table `name`: a list of partitions,
    /// each a list of pyarrow RecordBatches of one schema. Its rows travel
    /// with every plan that reads them.
    fn register_record_batches(
        &self,
        name: String,
        partitions: Vec<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<()> {
        let mut schema: Option<SchemaRef> = None;
        let mut rows = Vec::with_capacity(partitions.len());
        for partition in &partitions {
            let mut batches = Vec::with_capacity(partition.len());
            for batch in partition {
                let batch = import_batch(batch)?;
                match &schema {
                    None => schema = Some(batch.schema()),
                    Some(s) if s.fields() != batch.schema().fields() => {
                        return Err(ClusterError::new_err(format!(
                            "register_record_batches: the batches of {name} have different schemas"
                        )))
                    }
                    Some(_) => {}
                }
                batches.push(batch);
            }
            rows.push(batches);
        }
        let Some(schema) = schema else {
            return Err(ClusterError::new_err(format!(
                "register_record_batches: no batch for {name}, so no schema"
            )));
        };
        let table = MemTable::try_new(schema, rows).map_err(cluster_err)?;
        self.ctx
            .register_table(name.as_str(), Arc::new(table))
            .map_err(cluster_err)?;
        Ok(())
    }

    /// Removes the table `name`, if there is one.
    fn deregister_table(&self, name: &str) -> PyResult<()> {
        self.ctx.deregister_table(name).map_err(cluster_err)?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("ClusterContext({:?})", self.url)
    }
}

/// A query of a `ClusterContext`, run when its result is asked for.
#[pyclass(module = "datafusion_autograd._native", frozen)]
pub(crate) struct ClusterFrame {
    frame: DataFrame,
}

impl ClusterFrame {
    /// Runs the query on the cluster: its result as a pyarrow Table.
    fn table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let frame = self.frame.clone();
        let schema = Arc::new(self.frame.schema().as_arrow().clone());
        let batches = run(py, "collect", async move { frame.collect().await })?;
        let reader = py
            .import("pyarrow")?
            .getattr("RecordBatchReader")?
            .call_method1("from_stream", (Batches { schema, batches },))?;
        reader.call_method0("read_all")
    }
}

#[pymethods]
impl ClusterFrame {
    /// Runs the query: its result as a list of pyarrow RecordBatches.
    fn collect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table(py)?.call_method0("to_batches")
    }

    /// Runs the query: its result as a pyarrow Table.
    fn to_arrow_table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table(py)
    }

    /// Runs the query: its result as a dict of column name to list of values.
    fn to_pydict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table(py)?.call_method0("to_pydict")
    }

    /// The names of the result's columns.
    fn columns(&self) -> Vec<String> {
        self.frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("ClusterFrame({})", self.columns().join(", "))
    }
}

/// Batches handed to pyarrow through the Arrow C stream interface.
#[pyclass(module = "datafusion_autograd._native")]
struct Batches {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

#[pymethods]
impl Batches {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches = std::mem::take(&mut self.batches);
        let reader =
            RecordBatchIterator::new(batches.into_iter().map(Ok), Arc::clone(&self.schema));
        PyCapsule::new_with_value(
            py,
            FFI_ArrowArrayStream::new(Box::new(reader)),
            c"arrow_array_stream",
        )
    }
}

/// A pyarrow RecordBatch (anything with `__arrow_c_array__`) as a batch.
fn import_batch(batch: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let bad = |e: String| ClusterError::new_err(format!("register_record_batches: {e}"));
    let pair = batch
        .call_method0("__arrow_c_array__")
        .map_err(|e| bad(format!("not a pyarrow RecordBatch ({e})")))?;
    let pair = pair
        .cast_into::<PyTuple>()
        .map_err(|e| bad(e.to_string()))?;
    let schema = pair
        .get_item(0)?
        .cast_into::<PyCapsule>()
        .map_err(|e| bad(e.to_string()))?;
    let array = pair
        .get_item(1)?
        .cast_into::<PyCapsule>()
        .map_err(|e| bad(e.to_string()))?;
    let schema = schema.pointer_checked(Some(c"arrow_schema"))?;
    let array = array.pointer_checked(Some(c"arrow_array"))?;
    // SAFETY: the capsules hold an ArrowSchema and an ArrowArray, valid
    // while they live; the schema is only read, and from_raw moves the array
    // out, leaving the capsule's released as the interface asks.
    let (schema, array) = unsafe {
        (
            &*(schema.as_ptr() as *const FFI_ArrowSchema),
            FFI_ArrowArray::from_raw(array.as_ptr() as *mut FFI_ArrowArray),
        )
    };
    let fields = Schema::try_from(schema).map_err(|e| bad(e.to_string()))?;
    // SAFETY: the array and its schema come from the same producer.
    let data = unsafe { from_ffi(array, schema) }.map_err(|e| bad(e.to_string()))?;
    let columns = StructArray::from(data);
    RecordBatch::try_new(Arc::new(fields), columns.columns().to_vec())
        .map_err(|e| bad(e.to_string()))
}

/// Runs a Ballista scheduler on 127.0.0.1 until standard input ends (see
/// `datafusion_autograd.cluster`): blocks.
#[pyfunction]
pub(crate) fn serve_scheduler(py: Python<'_>) -> PyResult<()> {
    py.detach(|| catch_panic("the scheduler", process::run_scheduler))
        .map_err(ClusterError::new_err)?
        .map_err(cluster_err)
}

/// Runs a Ballista executor with `slots` task slots for the scheduler at
/// `scheduler` (`host:port`) until standard input ends: blocks.
#[pyfunction]
#[pyo3(signature = (scheduler, slots=1))]
pub(crate) fn serve_executor(py: Python<'_>, scheduler: &str, slots: usize) -> PyResult<()> {
    let scheduler: SocketAddr = scheduler.parse().map_err(|e| {
        ClusterError::new_err(format!("the scheduler's address {scheduler:?}: {e}"))
    })?;
    py.detach(|| catch_panic("the executor", || process::run_executor(scheduler, slots)))
        .map_err(ClusterError::new_err)?
        .map_err(cluster_err)
}
