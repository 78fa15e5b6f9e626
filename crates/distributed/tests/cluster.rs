//! datafusion-autograd on a Ballista cluster in this process: a scheduler and
//! two executors over loopback, reading Parquet files, against a local
//! session; and what does not carry over to a cluster, with the errors a user
//! sees.
//!
//! `cargo test -p datafusion-autograd-distributed -- --nocapture` prints the
//! trajectories, the jobs and the errors.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::planner::BallistaQueryPlanner;
use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_autograd_distributed::client;
use datafusion_autograd_distributed::cluster::Cluster;
use datafusion_autograd_distributed::data::{points, write_points};
use datafusion_autograd_distributed::fit::{self, Params};
use datafusion_proto::protobuf::LogicalPlanNode;
use tempfile::TempDir;

const FILES: usize = 4;
const ROWS_PER_FILE: usize = 25_000;
const STEPS: usize = 20;

/// Two partitions, on the cluster and locally: each step's scan is two
/// tasks, one per executor when both are free.
fn config() -> SessionConfig {
    SessionConfig::new_with_ballista().with_target_partitions(2)
}

async fn register_points(ctx: &SessionContext, dir: &TempDir) -> Result<()> {
    ctx.register_parquet(
        "points",
        dir.path().to_str().expect("a UTF-8 temporary path"),
        ParquetReadOptions::default(),
    )
    .await
}

/// Ballista's query planner, keeping every logical plan it is handed: the
/// plans the client serializes and sends to the scheduler.
#[derive(Debug)]
struct Recording {
    ballista: BallistaQueryPlanner<LogicalPlanNode>,
    sent: Arc<Mutex<Vec<LogicalPlan>>>,
}

#[async_trait]
impl QueryPlanner for Recording {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &SessionState,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.sent.lock().unwrap().push(plan.clone());
        self.ballista.create_physical_plan(plan, state).await
    }
}

/// The marker calls in `plan`, subqueries included. Names are not looked
/// at: a simplified `AVG(grad(f, a))` keeps its name through an alias.
fn markers_in(plan: &LogicalPlan) -> Vec<String> {
    let names: Vec<String> = datafusion_autograd::udfs()
        .iter()
        .map(|u| u.name().to_string())
        .collect();
    let mut found = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if names.iter().any(|n| n == f.name()) {
                        found.push(e.to_string());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .expect("the walk does not fail");
    found
}

fn relative(x: f64, y: f64) -> f64 {
    if x == y {
        0.0
    } else {
        (x - y).abs() / x.abs().max(y.abs())
    }
}

/// The gradient at `p` over `points`, in plain Rust, and the mean absolute
/// value of the averaged terms: the scale of the summation's rounding.
fn reference_gradient(points: &[(f64, f64)], p: Params) -> (Params, Params) {
    let n = points.len() as f64;
    let (mut g, mut scale) = (Params { a: 0.0, b: 0.0 }, Params { a: 0.0, b: 0.0 });
    for &(x, y) in points {
        let e = (p.b * x).exp();
        let da = 2.0 * (p.a * e - y) * e;
        let db = 2.0 * (p.a * e - y) * p.a * e * x;
        g.a += da / n;
        g.b += db / n;
        scale.a += da.abs() / n;
        scale.b += db.abs() / n;
    }
    (g, scale)
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

async fn closed(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

/// The three facts: the cluster follows the local trajectory, both
/// executors run tasks, and no marker leaves the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_descent_on_two_executors_follows_the_local_session() -> Result<()> {
    let data = write_points(FILES, ROWS_PER_FILE)?;
    let cluster = Cluster::start(2, 1).await?;
    let sent = Arc::default();
    let planner = Recording {
        ballista: BallistaQueryPlanner::new(
            format!("http://{}", cluster.scheduler_addr()),
            BallistaConfig::default(),
        ),
        sent: Arc::clone(&sent),
    };
    let remote = client::connect(
        &cluster.url(),
        config().with_ballista_query_planner(Arc::new(planner)),
    )
    .await?;
    let local = SessionContext::new_with_config(config());
    datafusion_autograd::register(&local);
    register_points(&remote, &data).await?;
    register_points(&local, &data).await?;
    let all_points = points(FILES * ROWS_PER_FILE);

    let (mut on_cluster, mut here) = (fit::START, fit::START);
    let (mut worst_params, mut worst_gradient, mut worst_reference) = (0.0_f64, 0.0_f64, 0.0_f64);
    let (mut cluster_times, mut local_times) = (Vec::new(), Vec::new());
    for step in 1..=STEPS {
        let started = Instant::now();
        let g_cluster = fit::gradient(&remote, on_cluster).await?;
        cluster_times.push(started.elapsed());
        let started = Instant::now();
        let g_local = fit::gradient(&local, here).await?;
        local_times.push(started.elapsed());
        // The summation's rounding is relative to the terms, not to their
        // mean: near the minimum the gradient is small and the terms are not.
        let (g_rust, scale) = reference_gradient(&all_points, on_cluster);
        let gradient = ((g_cluster.a - g_local.a).abs() / scale.a)
            .max((g_cluster.b - g_local.b).abs() / scale.b);
        let reference = ((g_cluster.a - g_rust.a).abs() / scale.a)
            .max((g_cluster.b - g_rust.b).abs() / scale.b);
        on_cluster = on_cluster.step(g_cluster);
        here = here.step(g_local);
        let params = relative(on_cluster.a, here.a).max(relative(on_cluster.b, here.b));
        println!(
            "step {step:>2}: a = {:.15}, b = {:.15}; cluster vs local: parameters {params:.1e}, \
             gradient {gradient:.1e} of the terms' scale; cluster vs Rust {reference:.1e}",
            on_cluster.a, on_cluster.b
        );
        worst_params = worst_params.max(params);
        worst_gradient = worst_gradient.max(gradient);
        worst_reference = worst_reference.max(reference);
    }
    println!(
        "median step: cluster {:.1} ms, local {:.1} ms ({} rows in {FILES} files)",
        median(cluster_times),
        median(local_times),
        FILES * ROWS_PER_FILE
    );
    // 1. The same trajectory as the local session.
    assert!(
        worst_params <= 1e-12,
        "parameters differ by {worst_params:e}"
    );
    assert!(
        worst_gradient <= 1e-12,
        "gradients differ by {worst_gradient:e}"
    );
    assert!(
        worst_reference <= 1e-10,
        "gradients off by {worst_reference:e}"
    );
    assert!(
        (on_cluster.a - 1.9685).abs() < 1e-3 && (on_cluster.b - 0.7229).abs() < 1e-3,
        "{on_cluster:?}"
    );

    // 2. Both executors ran tasks: by the scheduler's record of every job,
    // and by the executors' own count, which agree.
    let jobs = cluster.jobs().await?;
    assert_eq!(jobs.len(), STEPS);
    let mut by_scheduler: BTreeMap<String, usize> = cluster
        .executor_ids()
        .into_iter()
        .map(|id| (id, 0))
        .collect();
    for job in &jobs {
        println!(
            "job {} ({} ms): {:?}",
            job.id,
            job.end_time - job.start_time,
            job.tasks
        );
        assert!(!job.tasks.is_empty(), "job {} has no task", job.id);
        for task in &job.tasks {
            *by_scheduler
                .get_mut(&task.executor)
                .unwrap_or_else(|| panic!("unknown executor {}", task.executor)) += 1;
        }
    }
    let by_executors = cluster.tasks_counted_by_executors();
    println!("tasks per executor: scheduler {by_scheduler:?}, executors {by_executors:?}");
    assert_eq!(by_scheduler, by_executors);
    assert!(by_scheduler.values().all(|&n| n > 0), "{by_scheduler:?}");

    // 3. No plan sent to the scheduler holds a marker; the same walk finds
    // both in the plan as written.
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), STEPS);
    for plan in &sent {
        assert_eq!(markers_in(plan), Vec::<String>::new(), "{plan}");
    }
    println!("plan sent for step 1:\n{}", sent[0].display_indent());
    let written = remote.sql(&fit::gradient_sql(fit::START)).await?;
    assert_eq!(markers_in(written.logical_plan()).len(), 2);

    // Everything stops, and every port closes.
    let mut addrs = vec![cluster.scheduler_addr()];
    addrs.extend(cluster.executor_addrs());
    drop(remote);
    cluster.shutdown().await;
    for addr in addrs {
        assert!(closed(addr).await, "{addr} still accepts connections");
    }
    Ok(())
}

/// Negative control: the plan as written, markers included, sent straight to
/// the scheduler. The scheduler knows no marker and cannot even decode it, so
/// the steps above ran only because the client had replaced them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_cannot_run_a_plan_that_holds_markers() -> Result<()> {
    let data = write_points(2, 100)?;
    let cluster = Cluster::start(2, 1).await?;
    let ctx = client::connect(&cluster.url(), config()).await?;
    register_points(&ctx, &data).await?;
    let written = ctx
        .sql(&fit::gradient_sql(fit::START))
        .await?
        .logical_plan()
        .clone();
    assert_eq!(markers_in(&written).len(), 2);
    let exec = DistributedQueryExec::<LogicalPlanNode>::new(
        format!("http://{}", cluster.scheduler_addr()),
        BallistaConfig::default(),
        written,
        ctx.session_id(),
    );
    let error = collect(Arc::new(exec), ctx.task_ctx())
        .await
        .expect_err("the scheduler has no `grad`")
        .to_string();
    println!("{error}");
    assert!(error.contains("code: InvalidArgument"), "{error}");
    assert!(error.contains("Could not parse plan"), "{error}");
    assert!(
        error.contains("LogicalExtensionCodec is not provided for scalar function grad"),
        "{error}"
    );
    // Optimized first, as `ctx.sql` does, the same query runs.
    assert_eq!(outcome(&ctx, &fit::gradient_sql(fit::START)).await, Ok(1));
    drop(ctx);
    cluster.shutdown().await;
    Ok(())
}

/// Runs `sql` on `ctx`: the row count, or the error as the user sees it.
async fn outcome(ctx: &SessionContext, sql: &str) -> std::result::Result<usize, String> {
    let run = async {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok::<_, DataFusionError>(batches.iter().map(|b| b.num_rows()).sum())
    };
    run.await.map_err(|e| e.to_string())
}

/// Ballista's upgrade of the session state replaces its scalar functions:
/// markers registered before it are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_registered_before_the_upgrade_are_lost() -> Result<()> {
    let data = write_points(2, 100)?;
    let cluster = Cluster::start(2, 1).await?;
    let before = SessionContext::new_with_config(config());
    datafusion_autograd::register(&before);
    assert!(before.state().scalar_functions().contains_key("grad"));
    let upgraded = SessionContext::remote_with_state(&cluster.url(), before.state()).await?;
    assert!(!upgraded.state().scalar_functions().contains_key("grad"));
    register_points(&upgraded, &data).await?;
    let error = outcome(&upgraded, "SELECT AVG(grad(x * x, x)) FROM points")
        .await
        .expect_err("no `grad` after the upgrade");
    println!("{error}");
    // DataFusion's suggestion after it varies from run to run.
    assert!(
        error.starts_with("Error during planning: Invalid function 'grad'."),
        "{error}"
    );
    // Registered after it, as `client::connect` does, the markers work.
    datafusion_autograd::register(&upgraded);
    assert_eq!(
        outcome(&upgraded, "SELECT AVG(grad(x * x, x)) FROM points").await,
        Ok(1)
    );
    drop((before, upgraded));
    cluster.shutdown().await;
    Ok(())
}

/// In-memory tables (`register_batch`, `MemTable`) and the project's
/// `gradient(...)` table function, whose result is one, cannot be sent: the
/// client fails serializing the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_tables_do_not_reach_the_cluster() -> Result<()> {
    let data = write_points(2, 100)?;
    let cluster = Cluster::start(2, 1).await?;
    let ctx = client::connect(&cluster.url(), config()).await?;
    register_points(&ctx, &data).await?;
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))])?;
    ctx.register_batch("mem", batch.clone())?;
    let local = SessionContext::new();
    datafusion_autograd::register(&local);
    register_points(&local, &data).await?;
    local.register_batch("mem", batch)?;

    for sql in [
        "SELECT AVG(grad(x * x, x)) FROM mem",
        "SELECT * FROM gradient('SELECT AVG(power(x - y, 2)) FROM points', 'points.x')",
    ] {
        let error = outcome(&ctx, sql)
            .await
            .expect_err("a MemTable is not sent");
        println!("{sql}\n  cluster: {error}");
        assert!(
            error.starts_with(
                "Internal error: failed to serialize logical plan: \
                 Context(\"Error serializing custom table at "
            ),
            "{error}"
        );
        assert!(
            error.contains("NotImplemented(\"LogicalExtensionCodec is not provided\")"),
            "{error}"
        );
        let rows = outcome(&local, sql).await;
        println!("  local: {rows:?}");
        assert!(rows.is_ok_and(|n| n > 0), "{sql}");
    }
    drop(ctx);
    cluster.shutdown().await;
    Ok(())
}

/// The one-statement training loop of the README: five steps in a recursive
/// CTE.
const RECURSIVE_FIT: &str = "WITH RECURSIVE fit(step, a, b) AS ( \
        SELECT 0 AS step, CAST(1.0 AS DOUBLE) AS a, CAST(0.0 AS DOUBLE) AS b \
        UNION ALL \
        SELECT step + 1, \
               a - 0.1 * AVG(grad(power(fit.a * exp(fit.b * points.x) - points.y, 2), fit.a)), \
               b - 0.1 * AVG(grad(power(fit.a * exp(fit.b * points.x) - points.y, 2), fit.b)) \
        FROM fit CROSS JOIN points WHERE step < 5 GROUP BY step, a, b) \
    SELECT a, b FROM fit WHERE step = 5";

/// Runs `test` on a runtime whose threads, and the thread that waits for it,
/// have `mib` MiB of stack.
fn with_stack<F, Fut>(mib: usize, test: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>>,
{
    std::thread::Builder::new()
        .stack_size(mib << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(mib << 20)
                .enable_all()
                .build()?
                .block_on(test())
        })?
        .join()
        .expect("the test thread does not panic")
}

/// Recursive CTEs plan and run locally, but datafusion-proto has no encoding
/// for their physical operators, so the scheduler cannot hand them to an
/// executor. (Unoptimized builds also need more than 2 MiB of stack to encode
/// the logical plan of `RECURSIVE_FIT`, hence the larger stack here.)
#[test]
fn recursive_ctes_do_not_distribute() -> Result<()> {
    with_stack(64, || async {
        let data = write_points(2, 100)?;
        let cluster = Cluster::start(2, 1).await?;
        let ctx = client::connect(&cluster.url(), config()).await?;
        register_points(&ctx, &data).await?;
        let local = SessionContext::new();
        datafusion_autograd::register(&local);
        register_points(&local, &data).await?;
        for (sql, operator) in [
            (RECURSIVE_FIT, "WorkTableExec"),
            (
                "WITH RECURSIVE c(n) AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 3) \
                 SELECT * FROM c",
                "RecursiveQueryExec",
            ),
        ] {
            let error = outcome(&ctx, sql).await.expect_err("not distributable");
            println!("{sql}\n  cluster: {error}");
            assert!(
                error.contains(" failed: DataFusion error: Internal error: "),
                "{error}"
            );
            let unsupported = format!(
                "Unsupported plan and extension codec failed with \
                 [Internal error: Unsupported plan node, name: [{operator}]"
            );
            assert!(error.contains(&unsupported), "{error}");
            let rows = outcome(&local, sql).await;
            println!("  local: {rows:?}");
            assert!(rows.is_ok_and(|n| n > 0), "{sql}");
        }
        drop(ctx);
        cluster.shutdown().await;
        Ok(())
    })
}

/// The same in-memory table and `gradient()`, through a session that
/// submits physical plans: the table's rows and the gradient's stages
/// travel inside the plans, and the results equal the local session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_physical_plans_carry_in_memory_tables_and_gradients() -> Result<()> {
    let data = write_points(2, 100)?;
    let cluster = Cluster::start(2, 1).await?;
    let ctx = client::connect_submitting_plans(&cluster.url(), config()).await?;
    let local = SessionContext::new_with_config(config());
    datafusion_autograd::register(&local);
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))])?;
    for session in [&ctx, &local] {
        register_points(session, &data).await?;
        session.register_batch("mem", batch.clone())?;
    }
    for sql in [
        "SELECT AVG(grad(x * x, x)) AS v FROM mem",
        "SELECT SUM(grad) AS v FROM gradient('SELECT AVG(power(x - y, 2)) FROM points', 'points.x')",
    ] {
        let value = |batches: Vec<RecordBatch>| {
            let column = batches[0].column(0).as_any().downcast_ref::<Float64Array>().cloned();
            column.expect("a DOUBLE").value(0)
        };
        let on_cluster = value(ctx.sql(sql).await?.collect().await?);
        let here = value(local.sql(sql).await?.collect().await?);
        println!("{sql}: cluster {on_cluster}, local {here}");
        assert!(relative(on_cluster, here) <= 1e-12, "{sql}: {on_cluster} vs {here}");
    }
    let jobs = cluster.jobs().await?;
    assert!(
        jobs.len() > 2,
        "the gradient's stages ran as jobs: {}",
        jobs.len()
    );
    drop(ctx);
    cluster.shutdown().await;
    Ok(())
}
