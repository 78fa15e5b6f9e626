//! Fits y = a·exp(b·x) by gradient descent on a Ballista cluster started in
//! this process (one scheduler, two executors), each step one distributed
//! query, beside the same loop on a local session.
//!
//! `cargo run -p datafusion-autograd-distributed --example fit [STEPS [ROWS_PER_FILE]]`

use std::time::{Duration, Instant};

use ballista::prelude::SessionConfigExt;
use datafusion::error::Result;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_autograd_distributed::cluster::Cluster;
use datafusion_autograd_distributed::data::{write_points, TRUE_A, TRUE_B};
use datafusion_autograd_distributed::{client, fit};

const FILES: usize = 8;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let steps = args.next().transpose().map_err(arg)?.unwrap_or(20);
    let rows_per_file = args.next().transpose().map_err(arg)?.unwrap_or(50_000);

    let data = write_points(FILES, rows_per_file)?;
    let path = data.path().to_str().expect("a UTF-8 temporary path");
    let cluster = Cluster::start(2, 1).await?;
    println!(
        "scheduler {}, executors {:?}; {} rows in {FILES} Parquet files",
        cluster.url(),
        cluster.executor_addrs(),
        FILES * rows_per_file
    );

    // Two partitions on both sides: the same two partial sums per step, so
    // the two trajectories agree to the last bit.
    let config = || SessionConfig::new_with_ballista().with_target_partitions(2);
    let remote = client::connect(&cluster.url(), config()).await?;
    let local = SessionContext::new_with_config(config());
    datafusion_autograd::register(&local);
    for ctx in [&remote, &local] {
        ctx.register_parquet("points", path, ParquetReadOptions::default())
            .await?;
    }

    println!(
        "{:>4} {:>20} {:>20} {:>10} {:>10} {:>10}",
        "step", "a", "b", "cluster ms", "local ms", "|Δ|"
    );
    let (mut on_cluster, mut here) = (fit::START, fit::START);
    let (mut cluster_times, mut local_times) = (Vec::new(), Vec::new());
    for step in 1..=steps {
        let started = Instant::now();
        on_cluster = on_cluster.step(fit::gradient(&remote, on_cluster).await?);
        cluster_times.push(started.elapsed());
        let started = Instant::now();
        here = here.step(fit::gradient(&local, here).await?);
        local_times.push(started.elapsed());
        println!(
            "{step:>4} {:>20.15} {:>20.15} {:>10.1} {:>10.1} {:>10.1e}",
            on_cluster.a,
            on_cluster.b,
            ms(cluster_times[step - 1]),
            ms(local_times[step - 1]),
            (on_cluster.a - here.a)
                .abs()
                .max((on_cluster.b - here.b).abs()),
        );
    }
    println!(
        "median step: cluster {:.1} ms, local {:.1} ms ({} build); data from a = {TRUE_A}, b = {TRUE_B}",
        ms(median(cluster_times)),
        ms(median(local_times)),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );
    drop(remote);
    cluster.shutdown().await;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn arg(e: std::num::ParseIntError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Configuration(format!(
        "usage: fit [STEPS [ROWS_PER_FILE]]: {e}"
    ))
}
