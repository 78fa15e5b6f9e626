//! Running fuzz cases in child processes, so that a case that crashes the
//! process (a stack overflow, an abort, a signal) is reported, with its
//! reproducer, instead of taking the whole test binary down unexplained.
//!
//! The test re-runs its own binary, filtered to itself, with the case range
//! in [`RANGE_VAR`]. A child that fails normally printed its own report; a
//! child killed by a signal is bisected until one case is left.

use std::ops::Range;
use std::process::{Command, Output};

/// Set in a child to the cases it runs, as `start..end`.
const RANGE_VAR: &str = "AUTOGRAD_FUZZ_CHILD_RANGE";

/// Cases per child process.
const CASES_PER_CHILD: u64 = 5_000;

/// Whether this process is a child running part of a test.
pub fn child_range() -> Option<Range<u64>> {
    let range = std::env::var(RANGE_VAR).ok()?;
    let (start, end) = range.split_once("..").expect("a range written start..end");
    Some(start.parse().unwrap()..end.parse().unwrap())
}

/// Runs `cases` of the test `test` in child processes of this binary. On a
/// crash, finds the first crashing case and panics with `reproducer(case)`;
/// on a normal failure, panics with the child's own report.
pub fn run_in_children(test: &str, cases: Range<u64>, reproducer: impl Fn(u64) -> String) {
    let mut start = cases.start;
    while start < cases.end {
        let end = (start + CASES_PER_CHILD).min(cases.end);
        let output = child(test, start..end);
        if crashed(&output) {
            let crash = smallest_crash(test, start..end);
            if crash.end - crash.start > 1 {
                panic!("cases {crash:?} crash the process together, none alone");
            }
            panic!(
                "case {} crashed the process\n{}\n{}",
                crash.start,
                reproducer(crash.start),
                tail(&child(test, crash.clone()))
            );
        }
        if !output.status.success() {
            panic!("cases {start}..{end} failed:\n{}", tail(&output));
        }
        print!("{}", String::from_utf8_lossy(&output.stdout));
        start = end;
    }
}

/// Runs one test of this binary, alone, over `range`.
fn child(test: &str, range: Range<u64>) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(RANGE_VAR, format!("{}..{}", range.start, range.end))
        .output()
        .expect("the test binary runs")
}

/// A process that ended without an exit code was killed by a signal.
fn crashed(output: &Output) -> bool {
    output.status.code().is_none()
}

/// The smallest part of the crashing `range` found by bisection to crash:
/// one case, unless the crash needs cases from both halves.
fn smallest_crash(test: &str, range: Range<u64>) -> Range<u64> {
    let mut range = range;
    while range.end - range.start > 1 {
        let mid = range.start + (range.end - range.start) / 2;
        if crashed(&child(test, range.start..mid)) {
            range = range.start..mid;
        } else if crashed(&child(test, mid..range.end)) {
            range = mid..range.end;
        } else {
            break;
        }
    }
    range
}

/// The end of a child's output, where its report is.
fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status
    );
    let skip = text.chars().count().saturating_sub(8_000);
    text.chars().skip(skip).collect()
}
