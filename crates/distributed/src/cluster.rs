//! A Ballista cluster inside this process: one scheduler and N executors,
//! each on its own 127.0.0.1 port chosen by the OS.
//!
//! It is assembled from the public parts of `ballista-scheduler` and
//! `ballista-executor` rather than their `standalone` helpers, which spawn
//! servers nothing can stop, bind `localhost`, and keep the scheduler's job
//! records and the executors' task counts to themselves.
//!
//! Everything runs on a tokio runtime that the [`Cluster`] owns, so that one
//! thing ends it all: dropping the runtime cancels the servers, the
//! scheduler's background loops and the executors' polling, and closes their
//! ports. Nothing outlives the cluster, whichever runtime the caller uses.
//!
//! Scheduling is pull-based: each executor polls the scheduler for tasks, so
//! it needs no gRPC server of its own, only the Arrow Flight server that the
//! next stage and the client fetch its output from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::{
    ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
    SessionConfigExt,
};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::protobuf::task_status::Status;
use ballista_core::serde::protobuf::ExecutorRegistration;
use ballista_core::serde::scheduler::{
    ExecutorOperatingSystemSpecification, ExecutorSpecification,
};
use ballista_core::serde::BallistaCodec;
use ballista_core::utils::{
    create_grpc_server, default_config_producer, default_session_builder, GrpcServerConfig,
};
use ballista_core::{JobId, RuntimeProducer};
use ballista_executor::execution_engine::QueryStageExecutor;
use ballista_executor::execution_loop::poll_loop;
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::ExecutorMetricsCollector;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::execution_stage::ExecutionStage;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Stack size of the cluster's runtime threads. Unoptimized builds take
/// more than tokio's 2 MiB to decode and plan some plans (recursive queries).
const STACK_SIZE: usize = 16 * 1024 * 1024;

/// How long stopping waits for the cluster's tasks to end.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Cluster::start`] waits for the executors to register, and
/// [`Cluster::jobs`] for a job to be recorded as finished.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running scheduler and its executors. Dropping it, or awaiting
/// [`Cluster::shutdown`], stops every task and closes every port.
pub struct Cluster {
    // Only ever dropped. Declared first, so that the tasks stop before the
    // executors' work directories are removed.
    _runtime: ClusterRuntime,
    scheduler: SocketAddr,
    state: BallistaCluster,
    executors: Vec<ExecutorServer>,
}

/// One task of a finished job, as the scheduler recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub stage: usize,
    pub partition: usize,
    pub executor: String,
}

/// A finished job, as the scheduler recorded it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    /// When the job was queued, in milliseconds since the epoch.
    pub start_time: u64,
    pub end_time: u64,
    /// The tasks of its successful stages, by stage and partition.
    pub tasks: Vec<Task>,
}

/// A running executor (see [`start_executor`]): its id, its Arrow Flight
/// address, and its own count of the tasks it finished. Its work directory
/// is removed when it is dropped.
pub struct ExecutorServer {
    pub id: String,
    pub addr: SocketAddr,
    counter: Arc<TaskCounter>,
    _work_dir: TempDir,
}

impl ExecutorServer {
    /// The tasks this executor finished, by its own count.
    pub fn tasks(&self) -> usize {
        self.counter.total()
    }
}

impl Cluster {
    /// Starts a scheduler and `executors` executors with `slots` task slots
    /// each, and returns once every executor has registered.
    pub async fn start(executors: usize, slots: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ballista-cluster")
            .thread_stack_size(STACK_SIZE)
            .enable_all()
            .build()?;
        let runtime = ClusterRuntime(Some(runtime));
        let (scheduler, state) = runtime.run(start_scheduler()).await?;
        let mut started = Vec::with_capacity(executors);
        for _ in 0..executors {
            started.push(runtime.run(start_executor(scheduler, slots)).await?);
        }
        let cluster = Self {
            _runtime: runtime,
            scheduler,
            state,
            executors: started,
        };
        cluster.wait_for_executors().await?;
        Ok(cluster)
    }

    /// The address clients connect to: `df://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("df://{}", self.scheduler)
    }

    pub fn scheduler_addr(&self) -> SocketAddr {
        self.scheduler
    }

    /// The executors' Arrow Flight addresses, in the order of [`Cluster::executor_ids`].
    pub fn executor_addrs(&self) -> Vec<SocketAddr> {
        self.executors.iter().map(|e| e.addr).collect()
    }

    pub fn executor_ids(&self) -> Vec<String> {
        self.executors.iter().map(|e| e.id.clone()).collect()
    }

    /// Every job the scheduler has received, once finished, in the order
    /// they were queued.
    pub async fn jobs(&self) -> Result<Vec<Job>> {
        jobs(&self.state).await
    }

    /// The tasks each executor finished, by its own count (its metrics
    /// collector), over all jobs: an account independent of the scheduler's.
    pub fn tasks_counted_by_executors(&self) -> BTreeMap<String, usize> {
        self.executors
            .iter()
            .map(|e| (e.id.clone(), e.counter.total()))
            .collect()
    }

    /// Stops every task of the cluster and closes its ports; returns once
    /// they are closed.
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    async fn wait_for_executors(&self) -> Result<()> {
        let state = self.state.cluster_state();
        let expected = self.executors.len();
        settle(|| async {
            let registered = state.registered_executor_metadata().await.len();
            Ok((registered == expected).then_some(()))
        })
        .await?
        .ok_or_else(|| external("the executors did not register with the scheduler"))
    }
}

/// Every job the scheduler whose state is `state` has received, once
/// finished, in the order they were queued.
pub async fn jobs(state: &BallistaCluster) -> Result<Vec<Job>> {
    let job_state = state.job_state();
    let ids = job_state.get_all_jobs().await.map_err(external)?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        // The client learns that a job succeeded a moment before the
        // scheduler files it among the finished ones.
        let graph = settle(|| async { job_state.get_execution_graph(&id).await.map_err(external) })
            .await?
            .ok_or_else(|| external(format!("job {id} did not finish")))?;
        let mut tasks = Vec::new();
        for (stage, execution) in graph.stages() {
            if let ExecutionStage::Successful(execution) = execution {
                for (partition, info) in execution.task_infos.iter().enumerate() {
                    if let Status::Successful(task) = &info.task_status {
                        tasks.push(Task {
                            stage: *stage,
                            partition,
                            executor: task.executor_id.clone(),
                        });
                    }
                }
            }
        }
        tasks.sort_by_key(|t| (t.stage, t.partition));
        jobs.push(Job {
            id: id.to_string(),
            start_time: graph.start_time(),
            end_time: graph.end_time(),
            tasks,
        });
    }
    jobs.sort_by_key(|j| (j.start_time, j.id.clone()));
    Ok(jobs)
}

/// The runtime the cluster's tasks run on.
struct ClusterRuntime(Option<tokio::runtime::Runtime>);

impl ClusterRuntime {
    /// Runs `task` on the cluster's runtime, from any runtime.
    async fn run<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let runtime = self.0.as_ref().expect("the runtime runs until dropped");
        runtime.spawn(task).await.map_err(external)?
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            // A runtime cannot be shut down from asynchronous code, which is
            // where a cluster is usually dropped; a thread of its own can.
            let _ = std::thread::spawn(move || runtime.shutdown_timeout(STOP_TIMEOUT)).join();
        }
    }
}

/// A scheduler on 127.0.0.1, on a port the OS picks: in-memory cluster and
/// job state, served over gRPC by a task of the current runtime. Returns its
/// address and its state.
pub async fn start_scheduler() -> Result<(SocketAddr, BallistaCluster)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(
        SchedulerConfig::default()
            .with_hostname("127.0.0.1")
            .with_port(addr.port())
            .with_scheduler_policy(TaskSchedulingPolicy::PullStaged),
    );
    // Ballista's default sessions: DataFusion's built-in functions and no
    // marker, as on any stock scheduler.
    let state = BallistaCluster::new_memory(
        config.scheduler_name(),
        Arc::new(default_session_builder),
        Arc::new(default_config_producer),
    );
    let server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> =
        create_scheduler(state.clone(), Arc::clone(&config))
            .await
            .map_err(external)?;
    let service = SchedulerGrpcServer::new(server)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize)
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize);
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Ok((addr, state))
}

/// An executor on 127.0.0.1, with `slots` task slots: its Arrow Flight
/// server, on a port the OS picks, and its loop polling `scheduler`, both
/// tasks of the current runtime.
pub async fn start_executor(scheduler: SocketAddr, slots: usize) -> Result<ExecutorServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let id = format!("executor-{addr}");
    let work_dir = tempfile::Builder::new()
        .prefix("ballista-executor-")
        .tempdir()?;
    let work_path = work_dir
        .path()
        .to_str()
        .ok_or_else(|| external("the work directory's path is not UTF-8"))?
        .to_string();
    let registration = ExecutorRegistration {
        id: id.clone(),
        host: Some(addr.ip().to_string()),
        // The Flight port, where this executor's output is fetched from.
        port: addr.port().into(),
        // Push-based scheduling's port; nothing listens there when pulling.
        grpc_port: 0,
        specification: Some(
            ExecutorSpecification::default()
                .with_task_slots(slots as u32)
                .into(),
        ),
        os_info: Some(ExecutorOperatingSystemSpecification::default().into()),
    };
    // Ballista's function lists: the executor, too, knows no marker.
    let functions = SessionStateBuilder::new()
        .with_default_features()
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .build();
    let runtime_env = Arc::clone(functions.runtime_env());
    let runtime_producer: RuntimeProducer = Arc::new(move |_| Ok(Arc::clone(&runtime_env)));
    let counter = Arc::new(TaskCounter::default());
    let executor = Arc::new(Executor::with_default_execution_engine(
        registration,
        &work_path,
        runtime_producer,
        Arc::new(default_config_producer),
        Arc::new(BallistaFunctionRegistry::from(&functions)),
        Arc::clone(&counter) as Arc<dyn ExecutorMetricsCollector>,
        slots,
    ));

    let max_message = default_config_producer().ballista_grpc_client_max_message_size();
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_path))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(flight)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let client = SchedulerGrpcClient::connect(format!("http://{scheduler}"))
        .await
        .map_err(external)?
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    tokio::spawn(poll_loop(client, executor, BallistaCodec::default()));
    Ok(ExecutorServer {
        id,
        addr,
        counter,
        _work_dir: work_dir,
    })
}

/// Counts the tasks an executor finished: `Executor` calls `record_stage`
/// once for each, after writing its output.
#[derive(Default)]
struct TaskCounter(AtomicUsize);

impl TaskCounter {
    fn total(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl ExecutorMetricsCollector for TaskCounter {
    fn record_stage(
        &self,
        _job_id: &JobId,
        _stage_id: usize,
        _partition: usize,
        _plan: Arc<dyn QueryStageExecutor>,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `probe` until it returns something, for up to [`SETTLE_TIMEOUT`].
async fn settle<T, F, Fut>(mut probe: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(found) = probe().await? {
            return Ok(Some(found));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn external(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DataFusionError {
    DataFusionError::External(e.into())
}
