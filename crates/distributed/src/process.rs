//! A scheduler or an executor as a process of its own, for a cluster of
//! processes on one machine (Python's `LocalCluster` starts them).
//!
//! The process speaks with whoever started it through its standard streams:
//! it writes one line when it is ready, and it stops — its servers closed,
//! its work directory removed — when its standard input reaches its end.
//! The parent keeps the writing end of that pipe, so the process stops when
//! the parent closes it, and also when the parent dies in any way: the
//! operating system closes the pipe then, and no server is left behind.
//!
//! The scheduler writes `listening 127.0.0.1:PORT`, then `executor ID` as
//! each executor registers; a line `tasks` on its input is answered with
//! `tasks JOBS ID=N ID=N …`: how many jobs it finished, and how many of
//! their tasks each executor ran, by the scheduler's own records. The
//! executor writes `ready ID`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::error::Result;
use tokio::sync::mpsc;

use crate::cluster::{jobs, start_executor, start_scheduler};

/// Stack size of the servers' threads: unoptimized builds need more than
/// tokio's 2 MiB to decode and plan some plans.
const STACK_SIZE: usize = 16 * 1024 * 1024;

/// How long stopping waits for the servers' tasks to end.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(STACK_SIZE)
        .enable_all()
        .build()?)
}

/// Writes `line` to standard output, at once.
fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    // A parent that stopped reading is gone; the end of input stops us.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The lines of standard input, read on a thread of their own; the channel
/// closes at the end of input.
fn input_lines() -> mpsc::UnboundedReceiver<String> {
    let (send, receive) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Runs a scheduler on 127.0.0.1 until standard input ends.
pub fn run_scheduler() -> Result<()> {
    let runtime = runtime()?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let result = runtime.block_on(async {
        let (addr, state) = start_scheduler().await?;
        say(&out, &format!("listening {addr}"));
        let watched = state.clone();
        let announcer = Arc::clone(&out);
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            loop {
                for id in watched
                    .cluster_state()
                    .registered_executor_metadata()
                    .await
                    .into_iter()
                    .map(|m| m.id)
                {
                    if seen.insert(id.clone()) {
                        say(&announcer, &format!("executor {id}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let mut input = input_lines();
        while let Some(line) = input.recv().await {
            match line.trim() {
                "tasks" => {
                    let jobs = jobs(&state).await?;
                    let mut by_executor = BTreeMap::<String, usize>::new();
                    for task in jobs.iter().flat_map(|j| &j.tasks) {
                        *by_executor.entry(task.executor.clone()).or_default() += 1;
                    }
                    let counts: Vec<String> = by_executor
                        .iter()
                        .map(|(id, n)| format!(" {id}={n}"))
                        .collect();
                    say(&out, &format!("tasks {}{}", jobs.len(), counts.concat()));
                }
                other => say(&out, &format!("error unknown command {other:?}")),
            }
        }
        Ok(())
    });
    runtime.shutdown_timeout(STOP_TIMEOUT);
    result
}

/// Runs an executor with `slots` task slots, polling the scheduler at
/// `scheduler`, until standard input ends.
pub fn run_executor(scheduler: SocketAddr, slots: usize) -> Result<()> {
    let runtime = runtime()?;
    let out = Mutex::new(std::io::stdout());
    let result = runtime.block_on(async {
        let executor = start_executor(scheduler, slots.max(1)).await?;
        say(&out, &format!("ready {}", executor.id));
        let mut input = input_lines();
        while input.recv().await.is_some() {}
        Ok(executor)
    });
    // The tasks stop before the work directory is removed.
    runtime.shutdown_timeout(STOP_TIMEOUT);
    result.map(drop)
}
