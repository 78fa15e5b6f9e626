//! A gradient's physical plans kept by one statement and copied by the next
//! (`GradientTable::sharing_kept`): each copy reads its own statement's
//! tables, and is made only where the plans fit them. A statement's text
//! rewritten from what was kept (`rewrite_sql_kept`) is what forming makes.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::provider_as_source;
use datafusion::prelude::{col, SessionContext};
use datafusion_autograd::relational::{gradients, Staged};
use datafusion_autograd::{
    rewrite_sql_kept, AutogradOptions, GradientTable, Placement, PlanMemo, Relation, StatementMemo,
};
use datafusion_common::TableReference;
use datafusion_sql::parser::DFParser;
use futures::{FutureExt, StreamExt};

use crate::common::{analyzed, assert_close, parameter, Rng};

/// Least squares with a scalar subquery (the scale, read from a table of
/// its own): `s · AVG((Σ_i x_si w_i − y_s)²)`.
const LOSS: &str = "SELECT (SELECT MAX(c) FROM scale) * AVG((p.z - y.y) * (p.z - y.y)) \
    FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
    JOIN y ON p.s = y.s";

/// Samples of a least-squares problem: `x` (samples × features), `y`, `w`.
struct Problem {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    w: Vec<f64>,
    scale: f64,
}

impl Problem {
    fn new(samples: usize, features: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut draw = || rng.uniform(-1.0, 1.0);
        Self {
            x: (0..samples)
                .map(|_| (0..features).map(|_| draw()).collect())
                .collect(),
            y: (0..samples).map(|_| draw()).collect(),
            w: (0..features).map(|_| draw()).collect(),
            // A copy computes the subquery again: a stale scale would show.
            scale: 1.0 + draw().abs(),
        }
    }

    /// `∂ loss / ∂ w_i = s · 2/n Σ_s x_si (x_s·w − y_s)`.
    fn gradient(&self) -> Vec<f64> {
        let n = self.y.len() as f64;
        let mut g = vec![0.0; self.w.len()];
        for (row, y) in self.x.iter().zip(&self.y) {
            let r: f64 = row.iter().zip(&self.w).map(|(x, w)| x * w).sum::<f64>() - y;
            for (gi, x) in g.iter_mut().zip(row) {
                *gi += self.scale * 2.0 * x * r / n;
            }
        }
        g
    }

    /// Registers the problem's tables in `ctx`, in place of any before.
    fn register(&self, ctx: &SessionContext) {
        let (mut s, mut i, mut v) = (vec![], vec![], vec![]);
        for (sample, row) in self.x.iter().enumerate() {
            for (feature, x) in row.iter().enumerate() {
                s.push(sample as i64);
                i.push(feature as i64);
                v.push(*x);
            }
        }
        let ids = |n: usize| -> ArrayRef { Arc::new(Int64Array::from_iter_values(0..n as i64)) };
        let floats = |v: &[f64]| -> ArrayRef { Arc::new(Float64Array::from(v.to_vec())) };
        let tables = [
            (
                "x",
                vec![
                    ("s", Arc::new(Int64Array::from(s)) as ArrayRef),
                    ("i", Arc::new(Int64Array::from(i)) as ArrayRef),
                    ("v", floats(&v)),
                ],
            ),
            ("y", vec![("s", ids(self.y.len())), ("y", floats(&self.y))]),
            ("w", vec![("i", ids(self.w.len())), ("w", floats(&self.w))]),
            ("scale", vec![("c", floats(&[self.scale]))]),
        ];
        for (name, columns) in tables {
            ctx.deregister_table(name).unwrap();
            ctx.register_batch(name, RecordBatch::try_from_iter(columns).unwrap())
                .unwrap();
        }
    }
}

/// The gradient pass of `w`, formed once, as a host keeps it.
async fn pass(ctx: &SessionContext) -> Staged {
    gradients(
        &analyzed(ctx, LOSS).await,
        &[parameter(ctx, "w", "w").await],
        &Default::default(),
    )
    .unwrap()
}

/// The gradient of `w` as one statement of `ctx` asks for it: `pass` over
/// the tables `ctx` has now, planned or copied through `memo`.
fn table(ctx: &SessionContext, pass: &Staged, memo: &Arc<PlanMemo>) -> GradientTable {
    let state = ctx.state();
    let sources = |name: &TableReference| {
        let provider = state
            .schema_for_ref(name.clone())?
            .table(name.table())
            .now_or_never()
            .expect("in memory")?;
        Ok(provider.map(provider_as_source))
    };
    let bound = pass.with_sources(&sources).unwrap();
    GradientTable::sharing_kept(Arc::new(bound), Arc::clone(memo)).remove(0)
}

async fn statement(
    ctx: &SessionContext,
    pass: &Staged,
    memo: &Arc<PlanMemo>,
) -> datafusion::prelude::DataFrame {
    ctx.read_table(Arc::new(table(ctx, pass, memo)))
        .unwrap()
        .sort(vec![col("i").sort(true, false)])
        .unwrap()
}

fn gradient_of(batches: &[RecordBatch]) -> Vec<f64> {
    let mut out = vec![];
    for batch in batches {
        let grad = batch.column_by_name("grad").unwrap();
        let grad = grad.as_any().downcast_ref::<Float64Array>().unwrap();
        out.extend(grad.values().iter().copied());
    }
    out
}

#[track_caller]
fn assert_gradient(got: &[f64], problem: &Problem, what: &str) {
    let expected = problem.gradient();
    assert_eq!(got.len(), expected.len(), "{what}: rows");
    for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_close(*g, *e, 1e-12, &format!("{what}, w[{k}]"));
    }
}

#[tokio::test]
async fn a_copy_reads_its_own_statements_rows() {
    let ctx = SessionContext::new();
    let memo = Arc::new(PlanMemo::default());
    Problem::new(30, 4, 10).register(&ctx);
    let pass = pass(&ctx).await;
    for (step, seed) in [11, 12, 13].into_iter().enumerate() {
        let problem = Problem::new(30, 4, seed);
        problem.register(&ctx);
        let got = statement(&ctx, &pass, &memo).await.collect().await.unwrap();
        assert_gradient(&gradient_of(&got), &problem, &format!("statement {step}"));
    }
    assert_eq!((memo.planned(), memo.copied()), (1, 2));
}

#[tokio::test]
async fn tables_of_another_size_are_planned_again() {
    let ctx = SessionContext::new();
    let memo = Arc::new(PlanMemo::default());
    Problem::new(30, 4, 20).register(&ctx);
    let pass = pass(&ctx).await;
    for (samples, seed) in [(30, 21), (45, 22), (45, 23)] {
        let problem = Problem::new(samples, 4, seed);
        problem.register(&ctx);
        let got = statement(&ctx, &pass, &memo).await.collect().await.unwrap();
        assert_gradient(&gradient_of(&got), &problem, &format!("{samples} samples"));
    }
    assert_eq!((memo.planned(), memo.copied()), (2, 1));
}

#[tokio::test]
async fn another_pass_is_planned_not_copied() {
    // The same loss formed again is another pass (its stages named anew),
    // and so is another loss: the memo's plans are not theirs.
    let ctx = SessionContext::new();
    let memo = Arc::new(PlanMemo::default());
    let problem = Problem::new(30, 4, 51);
    problem.register(&ctx);
    for _ in 0..2 {
        let pass = pass(&ctx).await;
        let got = statement(&ctx, &pass, &memo).await.collect().await.unwrap();
        assert_gradient(&gradient_of(&got), &problem, "the pass formed again");
    }
    assert_eq!((memo.planned(), memo.copied()), (2, 0));
}

#[tokio::test]
async fn a_copy_still_running_is_not_copied_again() {
    let ctx = SessionContext::new();
    let memo = Arc::new(PlanMemo::default());
    let first = Problem::new(30, 4, 31);
    first.register(&ctx);
    let pass = pass(&ctx).await;
    statement(&ctx, &pass, &memo).await.collect().await.unwrap();
    // A copy, its stream open and not yet read ...
    let mut running = statement(&ctx, &pass, &memo)
        .await
        .execute_stream()
        .await
        .unwrap();
    // ... while the same statement runs over other rows: its own plans.
    let second = Problem::new(30, 4, 32);
    second.register(&ctx);
    let got = statement(&ctx, &pass, &memo).await.collect().await.unwrap();
    assert_gradient(
        &gradient_of(&got),
        &second,
        "the statement beside the open copy",
    );
    let mut batches = vec![];
    while let Some(batch) = running.next().await {
        batches.push(batch.unwrap());
    }
    assert_gradient(&gradient_of(&batches), &first, "the open copy");
    assert_eq!((memo.planned(), memo.copied()), (2, 1));
}

#[tokio::test]
async fn a_result_read_twice_in_one_statement_runs_two_plans() {
    // Both reads run at once; copies of one template would share the scalar
    // subquery's results, and the second to compute them would fail.
    let ctx = SessionContext::new();
    let memo = Arc::new(PlanMemo::default());
    Problem::new(30, 4, 40).register(&ctx);
    let pass = pass(&ctx).await;
    for seed in [41, 42, 43] {
        let problem = Problem::new(30, 4, seed);
        problem.register(&ctx);
        ctx.deregister_table("g").unwrap();
        ctx.register_table("g", Arc::new(table(&ctx, &pass, &memo)))
            .unwrap();
        let sql = "SELECT a.i, a.grad + b.grad AS grad FROM g a JOIN g b ON a.i = b.i ORDER BY a.i";
        let got = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let twice: Vec<f64> = gradient_of(&got).iter().map(|g| g / 2.0).collect();
        assert_gradient(&twice, &problem, &format!("seed {seed}"));
    }
    assert_eq!((memo.planned(), memo.copied()), (1, 2));
}

#[tokio::test]
async fn nothing_kept_holds_a_table() {
    // The memo outlives the statements; the tables they read must not —
    // neither those of the statement that planned the kept plans, nor those
    // of the one that ran a copy.
    let ctx = SessionContext::new();
    let memo = Arc::new(PlanMemo::default());
    Problem::new(30, 4, 60).register(&ctx);
    let pass = pass(&ctx).await;
    let mut read = vec![];
    for seed in [61, 62] {
        Problem::new(30, 4, seed).register(&ctx);
        statement(&ctx, &pass, &memo).await.collect().await.unwrap();
        for name in ["x", "y", "w", "scale"] {
            read.push((name, seed, ctx.table_provider(name).await.unwrap()));
        }
    }
    assert_eq!((memo.planned(), memo.copied()), (1, 1));
    Problem::new(30, 4, 63).register(&ctx);
    for (name, seed, table) in read {
        assert_eq!(
            Arc::strong_count(&table),
            1,
            "{name} of statement {seed} is still held"
        );
    }
}

/// Names each gradient table `__t<n>`, counting from 0 across statements.
#[derive(Default)]
struct Counting(usize);

impl Placement for Counting {
    fn table(&mut self, _staged: &Arc<Staged>, _k: usize) -> datafusion_common::Result<String> {
        self.0 += 1;
        Ok(format!("__t{}", self.0 - 1))
    }
}

#[test]
fn a_statement_rewritten_again_is_the_first_text_with_its_tables_renamed() {
    // The text made from what was kept must be what forming would make: the
    // first text, each table's name replaced by the new one, and SQL that
    // parses to the same statement. Two markers over the loss, so two holes
    // of one pass; a comment naming a marker stays a comment.
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("w", DataType::Float64, false),
    ]));
    let catalog = |name: &TableReference| {
        Ok((name.table() == "w").then(|| Relation::Table(Arc::clone(&schema))))
    };
    let sql = "WITH loss AS (SELECT SUM(w * w) AS l FROM w) \
        SELECT i, grad((SELECT l FROM loss), w) AS g, w - 0.1 * grad((SELECT l FROM loss), w) AS next \
        FROM w -- grad(w, w)";
    let memo = StatementMemo::default();
    let mut place = Counting::default();
    let options = AutogradOptions::default();
    let first = rewrite_sql_kept(sql, &catalog, &options, &mut place, &memo).unwrap();
    let placed = place.0;
    let again = rewrite_sql_kept(sql, &catalog, &options, &mut place, &memo).unwrap();
    assert_eq!((memo.formed(), memo.reused()), (1, 1));
    assert_eq!(
        place.0,
        2 * placed,
        "the kept statement places as many tables"
    );
    let mut renamed = first.clone();
    for n in (0..placed).rev() {
        renamed = renamed.replace(&format!("__t{n}"), &format!("__t{}", n + placed));
    }
    assert_eq!(again, renamed);
    let parse = |text: &str| {
        DFParser::parse_sql(text)
            .unwrap_or_else(|e| panic!("`{text}` does not parse: {e}"))
            .into_iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(parse(&again), parse(&renamed));
    assert!(again.ends_with("-- grad(w, w)"), "{again}");
}

#[test]
fn a_statement_that_names_a_table_of_its_own_is_formed_again() {
    // A literal that holds the name the host gives a gradient's table would
    // be a hole too: such a statement is not kept.
    let schema = Arc::new(Schema::new(vec![Field::new("w", DataType::Float64, false)]));
    let catalog = |name: &TableReference| {
        Ok((name.table() == "w").then(|| Relation::Table(Arc::clone(&schema))))
    };
    let sql = "SELECT '__t0' AS tag, grad((SELECT SUM(w * w) FROM w), w) AS g FROM w";
    let memo = StatementMemo::default();
    let mut place = Counting::default();
    let options = AutogradOptions::default();
    let first = rewrite_sql_kept(sql, &catalog, &options, &mut place, &memo).unwrap();
    assert!(first.starts_with("SELECT '__t0' AS tag"), "{first}");
    rewrite_sql_kept(sql, &catalog, &options, &mut place, &memo).unwrap();
    assert_eq!((memo.formed(), memo.reused()), (2, 0));
}
