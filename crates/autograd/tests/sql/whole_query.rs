//! Markers over whole queries, `grad((SELECT l FROM loss), w)`, and
//! `stop_gradient`: checked against closed forms written here, finite
//! differences of the loss, and the `gradient()` table function.

use datafusion::prelude::SessionContext;
use datafusion_autograd::{error_kind, ErrorKind};

use crate::common::{assert_close, column, context, error, rows, text};

async fn run(ctx: &SessionContext, sql: &str) {
    rows(ctx, sql).await;
}

/// `w(i, w)`, `x(s, i, v)` and `y(s, t)` of a small linear regression.
async fn regression(ctx: &SessionContext) {
    run(
        ctx,
        "CREATE TABLE w (i BIGINT, w DOUBLE) AS VALUES (0, 0.5), (1, -0.25), (2, 1.5)",
    )
    .await;
    run(
        ctx,
        "CREATE TABLE x (s BIGINT, i BIGINT, v DOUBLE) AS VALUES \
         (0, 0, 1.0), (0, 1, 2.0), (0, 2, -1.0), (1, 0, 0.5), (1, 1, -0.5), (1, 2, 3.0), \
         (2, 0, -2.0), (2, 1, 1.5), (2, 2, 0.25)",
    )
    .await;
    run(
        ctx,
        "CREATE TABLE y (s BIGINT, t DOUBLE) AS VALUES (0, 1.0), (1, -1.0), (2, 0.5)",
    )
    .await;
}

const LOSS: &str = "SELECT AVG(power(p.z - y.t, 2)) AS l \
    FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
    JOIN y ON p.s = y.s";

/// The gradient of the regression loss, from numbers written here: 2/n Xᵀ(Xw − y).
fn closed_form() -> Vec<f64> {
    let x = [[1.0, 2.0, -1.0], [0.5, -0.5, 3.0], [-2.0, 1.5, 0.25]];
    let (w, y) = ([0.5, -0.25, 1.5], [1.0, -1.0, 0.5]);
    let mut g = [0.0; 3];
    for s in 0..3 {
        let r: f64 = (0..3).map(|i| x[s][i] * w[i]).sum::<f64>() - y[s];
        for i in 0..3 {
            g[i] += 2.0 / 3.0 * r * x[s][i];
        }
    }
    g.to_vec()
}

#[tokio::test]
async fn the_loss_as_a_cte_of_the_statement() {
    let ctx = context();
    regression(&ctx).await;
    let sql = format!(
        "WITH loss AS ({LOSS}) \
         SELECT i, w - 0.05 * grad((SELECT l FROM loss), w) AS w FROM w ORDER BY i"
    );
    let got = rows(&ctx, &sql).await;
    let w = [0.5, -0.25, 1.5];
    for (k, g) in closed_form().into_iter().enumerate() {
        assert_close(got[k][1].unwrap(), w[k] - 0.05 * g, 1e-12, &format!("w{k}"));
    }
    // The same as the table function.
    let table = column(
        &ctx,
        &format!(
            "SELECT grad FROM gradient('{}', 'w.w') ORDER BY i",
            LOSS.replace('\'', "''")
        ),
    )
    .await;
    let marker = column(
        &ctx,
        &format!("WITH loss AS ({LOSS}) SELECT grad((SELECT l FROM loss), w) FROM w ORDER BY i"),
    )
    .await;
    for (a, b) in table.iter().zip(&marker) {
        assert_close(*b, *a, 1e-12, "the marker against gradient()");
    }
}

#[tokio::test]
async fn composes_with_the_calculus_of_the_row() {
    let ctx = context();
    regression(&ctx).await;
    let w = [0.5, -0.25, 1.5];
    let total: f64 = w.iter().map(|v| v * v).sum();
    // grad(w · Σw², w) = Σw² + 2w²
    // Ordered by a column it does not show: DataFusion 54 would drop the sort
    // over a scalar subquery (apache/datafusion#23677), which this one is not.
    let got = column(
        &ctx,
        "SELECT grad(w * (SELECT SUM(w * w) FROM w), w) FROM w ORDER BY i",
    )
    .await;
    for k in 0..3 {
        assert_close(got[k], total + 2.0 * w[k] * w[k], 1e-12, "Σw² + 2w²");
    }
    // vjp and jvp are c and t times it; an aggregate of it is a gradient too.
    let sub = "(SELECT SUM(w * w * w) FROM w)";
    let got = rows(
        &ctx,
        &format!("SELECT vjp({sub}, w, 2.5), jvp({sub}, w, i + 1) FROM w ORDER BY i"),
    )
    .await;
    for k in 0..3 {
        let g = 3.0 * w[k] * w[k];
        assert_close(got[k][0].unwrap(), 2.5 * g, 1e-12, "vjp");
        assert_close(got[k][1].unwrap(), (k as f64 + 1.0) * g, 1e-12, "jvp");
    }
    let mean = column(&ctx, &format!("SELECT AVG(grad({sub}, w)) FROM w")).await[0];
    assert_close(
        mean,
        w.iter().map(|v| 3.0 * v * v).sum::<f64>() / 3.0,
        1e-12,
        "AVG(grad)",
    );
    // Under an alias, and with the loss's table not read: a constant.
    let aliased = column(
        &ctx,
        &format!("SELECT grad({sub}, q.w) FROM w AS q ORDER BY q.i"),
    )
    .await;
    assert_close(aliased[2], 3.0 * 1.5 * 1.5, 1e-12, "aliased");
    let constant = column(&ctx, "SELECT grad(w * (SELECT SUM(v) FROM x), w) FROM w").await;
    let sum_v = 1.0 + 2.0 - 1.0 + 0.5 - 0.5 + 3.0 - 2.0 + 1.5 + 0.25;
    assert!(
        constant.iter().all(|d| (d - sum_v).abs() < 1e-12),
        "{constant:?}"
    );
}

#[tokio::test]
async fn in_tables_views_and_inserts() {
    let ctx = context();
    regression(&ctx).await;
    let step = format!(
        "WITH loss AS ({LOSS}) SELECT i, w - 0.05 * grad((SELECT l FROM loss), w) AS w FROM w"
    );
    run(&ctx, &format!("CREATE TABLE stepped AS {step}")).await;
    run(&ctx, &format!("CREATE VIEW stepping AS {step}")).await;
    run(&ctx, "CREATE TABLE inserted (i BIGINT, w DOUBLE)").await;
    run(&ctx, &format!("INSERT INTO inserted {step}")).await;
    let expected = closed_form();
    for table in ["stepped", "stepping", "inserted"] {
        let got = column(&ctx, &format!("SELECT w FROM {table} ORDER BY i")).await;
        for (k, w) in [0.5, -0.25, 1.5].iter().enumerate() {
            assert_close(got[k], w - 0.05 * expected[k], 1e-12, table);
        }
    }
}

/// In a `WHERE` clause, an aggregate's argument, and the DataFrame API.
#[tokio::test]
async fn in_filters_aggregates_and_dataframes() {
    use datafusion::prelude::col;
    use datafusion_autograd::expr_fn::grad;
    use datafusion_expr::scalar_subquery;
    let ctx = context();
    regression(&ctx).await;
    let g = closed_form();
    let kept = column(
        &ctx,
        &format!(
            "WITH loss AS ({LOSS}) SELECT CAST(i AS DOUBLE) AS k FROM w \
             WHERE grad((SELECT l FROM loss), w) > 0 ORDER BY i"
        ),
    )
    .await;
    let expected: Vec<f64> = (0..3).filter(|&k| g[k] > 0.0).map(|k| k as f64).collect();
    assert_eq!(kept, expected);
    let summed = column(
        &ctx,
        &format!("WITH loss AS ({LOSS}) SELECT SUM(w * grad((SELECT l FROM loss), w)) FROM w"),
    )
    .await;
    let w = [0.5, -0.25, 1.5];
    assert_close(
        summed[0],
        (0..3).map(|k| w[k] * g[k]).sum(),
        1e-12,
        "Σ w·∂l/∂w",
    );
    let loss = ctx.sql(LOSS).await.unwrap().into_unoptimized_plan();
    let frame = ctx
        .table("w")
        .await
        .unwrap()
        .sort(vec![col("i").sort(true, false)])
        .unwrap()
        .select(vec![grad(
            scalar_subquery(std::sync::Arc::new(loss)),
            col("w"),
        )
        .alias("g")])
        .unwrap();
    let batches = frame.collect().await.unwrap();
    let got: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    for (a, b) in got.iter().zip(&g) {
        assert_close(*a, *b, 1e-12, "DataFrame API");
    }
}

#[tokio::test]
async fn several_parameters_in_one_statement() {
    let ctx = context();
    regression(&ctx).await;
    run(
        &ctx,
        "CREATE TABLE b (k BIGINT, b DOUBLE) AS VALUES (0, 0.25)",
    )
    .await;
    let loss = "SELECT AVG(power(p.z + b.b - y.t, 2)) AS l \
        FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
        JOIN y ON p.s = y.s CROSS JOIN b";
    let sql = format!(
        "WITH loss AS ({loss}) \
         SELECT 0 AS t, i, grad((SELECT l FROM loss), w) AS g FROM w \
         UNION ALL SELECT 1, k, grad((SELECT l FROM loss), b) FROM b ORDER BY t, i"
    );
    let got = rows(&ctx, &sql).await;
    // References from the table function, one parameter at a time.
    let quoted = loss.replace('\'', "''");
    let dw = column(
        &ctx,
        &format!("SELECT grad FROM gradient('{quoted}', 'w.w') ORDER BY i"),
    )
    .await;
    let db = column(
        &ctx,
        &format!("SELECT grad FROM gradient('{quoted}', 'b.b') ORDER BY k"),
    )
    .await;
    let expected: Vec<f64> = dw.into_iter().chain(db).collect();
    assert_eq!(got.len(), 4);
    for (row, e) in got.iter().zip(expected) {
        assert_close(row[2].unwrap(), e, 1e-12, "one pass, two parameters");
    }
    // The two branches read the stages of one reverse pass.
    assert_eq!(passes_read(&ctx, &sql).await.len(), 1);
    // A different loss is a pass of its own.
    let two = sql.replace(
        "grad((SELECT l FROM loss), b)",
        "grad((SELECT 2 * l FROM loss), b)",
    );
    assert_eq!(passes_read(&ctx, &two).await.len(), 2);
}

/// The reverse passes whose stages the physical plan of `sql` reads.
async fn passes_read(ctx: &SessionContext, sql: &str) -> std::collections::BTreeSet<String> {
    let explained = text(ctx, &format!("EXPLAIN {sql}")).await;
    explained
        .split("StageExec: stage=")
        .skip(1)
        .map(|rest| rest.split("_s").next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn stop_gradient_passes_nothing() {
    let ctx = context();
    regression(&ctx).await;
    let got = rows(
        &ctx,
        "SELECT w, grad(w * stop_gradient(w), w), stop_gradient(w) FROM w ORDER BY i",
    )
    .await;
    for row in &got {
        assert_close(
            row[1].unwrap(),
            row[0].unwrap(),
            1e-12,
            "d(w·sg(w)) = sg(w)",
        );
        assert_eq!(row[2], row[0]);
    }
    let grads = column(
        &ctx,
        "SELECT grad FROM gradient('SELECT SUM(w * stop_gradient(w) + stop_gradient(w * w)) FROM w', 'w.w') ORDER BY i",
    )
    .await;
    for (g, w) in grads.iter().zip([0.5, -0.25, 1.5]) {
        assert_close(*g, w, 1e-12, "gradient() through stop_gradient");
    }
}

#[tokio::test]
async fn what_is_refused_is_named() {
    let ctx = context();
    regression(&ctx).await;
    let e = error(
        &ctx,
        "SELECT grad(grad((SELECT SUM(w * w) FROM w), w), w) FROM w",
    )
    .await;
    assert!(e.contains("second derivative of a whole query"), "{e}");
    let e = ctx
        .sql("SELECT grad(grad((SELECT SUM(w * w) FROM w), w), w) FROM w")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), Some(ErrorKind::UnsupportedOperation), "{e}");
    // A column of a derived table is a variable of the row, not a table's column.
    let derived = column(
        &ctx,
        "SELECT grad(v * (SELECT SUM(w) FROM w), v) FROM (SELECT w AS v FROM w) d",
    )
    .await;
    assert!(
        derived.iter().all(|d| (d - 1.75).abs() < 1e-12),
        "{derived:?}"
    );
}

/// A correlated subquery is a constant of the derivative unless it moves
/// with the column: one that refers to it, or reads its table, is refused.
#[tokio::test]
async fn correlated_subqueries() {
    let ctx = context();
    regression(&ctx).await;
    // y.t of the sample whose index is w's: a value per row, constant in w.
    let got = rows(
        &ctx,
        "SELECT w, grad(w * w * (SELECT MAX(y.t) FROM y WHERE y.s = w.i), w) FROM w ORDER BY i",
    )
    .await;
    for (row, t) in got.iter().zip([1.0, -1.0, 0.5]) {
        let w = row[0].unwrap();
        assert_close(row[1].unwrap(), 2.0 * w * t, 1e-12, "d(w²·t)/dw");
    }
    let e = error(
        &ctx,
        "SELECT grad((SELECT MAX(q.i * p.w) FROM w q), p.w) FROM w p",
    )
    .await;
    assert!(
        e.contains("scalar subquery that refers to the column being differentiated"),
        "{e}"
    );
    let e = error(
        &ctx,
        "SELECT grad(p.w * (SELECT SUM(q.w) FROM w q WHERE q.i <> p.i), p.w) FROM w p",
    )
    .await;
    assert!(
        e.contains("reads table `w` of the column being differentiated"),
        "{e}"
    );
}

/// The SQL text `rewrite_sql` writes for a host without the markers — the
/// loss's gradient joined to the table it is read at — gives the same.
#[tokio::test]
async fn as_sql_text_for_a_plain_host() {
    use datafusion_autograd::{rewrite_sql, Relation};
    let ctx = context();
    regression(&ctx).await;
    let plain = SessionContext::new();
    regression(&plain).await;
    let catalog = |table: &datafusion_common::TableReference| {
        let df = futures::executor::block_on(plain.table(table.table())).ok();
        Ok(df.map(|df| Relation::Table(std::sync::Arc::new(df.schema().as_arrow().clone()))))
    };
    for statement in [
        format!("WITH loss AS ({LOSS}) SELECT i, w - 0.05 * grad((SELECT l FROM loss), w) AS w FROM w ORDER BY i"),
        "SELECT q.i, grad(q.w * (SELECT SUM(w * w) FROM w), q.w) AS g FROM w AS q ORDER BY q.i".to_string(),
        format!("WITH loss AS ({LOSS}) SELECT AVG(vjp((SELECT l FROM loss), w, 2.0)) FROM w"),
    ] {
        let text = rewrite_sql(&statement, &catalog, &Default::default()).unwrap();
        let native = rows(&ctx, &statement).await;
        let written = rows(&plain, &text).await;
        assert_eq!(native.len(), written.len(), "{text}");
        for (a, b) in native.iter().zip(&written) {
            for (x, y) in a.iter().zip(b) {
                assert_close(y.unwrap(), x.unwrap(), 1e-12, &text);
            }
        }
    }
}

/// A host as the Python one places gradients: every result of a pass a
/// table of `ctx`, the tables of one pass sharing its stages, and the
/// statement's own reads of a loss it differentiates served by the pass.
struct Registering<'a> {
    ctx: &'a SessionContext,
    serves: bool,
    passes: Vec<(
        std::sync::Arc<datafusion_autograd::relational::Staged>,
        Vec<datafusion_autograd::GradientTable>,
    )>,
    /// The last table named.
    named: Option<String>,
}

impl<'a> Registering<'a> {
    fn new(ctx: &'a SessionContext, serves: bool) -> Self {
        Self {
            ctx,
            serves,
            passes: vec![],
            named: None,
        }
    }
}

impl datafusion_autograd::Placement for Registering<'_> {
    fn table(
        &mut self,
        staged: &std::sync::Arc<datafusion_autograd::relational::Staged>,
        k: usize,
    ) -> datafusion_common::Result<String> {
        use futures::FutureExt;
        use std::sync::Arc;
        let known = self.passes.iter().position(|(s, _)| Arc::ptr_eq(s, staged));
        let at = match known {
            Some(at) => at,
            None => {
                let state = self.ctx.state();
                let sources = |name: &datafusion_common::TableReference| {
                    let provider = state
                        .schema_for_ref(name.clone())?
                        .table(name.table())
                        .now_or_never()
                        .expect("in memory")?;
                    Ok(provider.map(datafusion::datasource::provider_as_source))
                };
                let bound = Arc::new(staged.with_sources(&sources)?);
                let tables = datafusion_autograd::GradientTable::sharing(bound);
                self.passes.push((Arc::clone(staged), tables));
                self.passes.len() - 1
            }
        };
        // Unique in the process: each statement registers tables of its own.
        static NAMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "__served{}",
            NAMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.named = Some(name.clone());
        self.ctx
            .register_table(name.as_str(), Arc::new(self.passes[at].1[k].clone()))?;
        Ok(name)
    }

    fn serves_the_loss(&self) -> bool {
        self.serves
    }
}

/// The regression's loss, from numbers written here: mean((Xw − y)²).
fn closed_form_loss() -> f64 {
    let x = [[1.0, 2.0, -1.0], [0.5, -0.5, 3.0], [-2.0, 1.5, 0.25]];
    let (w, y) = ([0.5, -0.25, 1.5], [1.0, -1.0, 0.5]);
    (0..3)
        .map(|s| ((0..3).map(|i| x[s][i] * w[i]).sum::<f64>() - y[s]).powi(2))
        .sum::<f64>()
        / 3.0
}

/// A training step's statement reads the loss it differentiates again (its
/// value as a row beside the gradients): a host whose tables share a pass's
/// stages reads that row where the pass keeps it, the common table
/// expression's query replaced by a read of one more table, instead of
/// computing the loss a second time. Only an expression that is the loss
/// read whole is replaced; the rest is left to the host.
#[tokio::test]
async fn a_statement_reads_the_loss_it_differentiates_where_the_pass_keeps_it() {
    use datafusion_autograd::{rewrite_sql_with, Relation};
    use datafusion_sql::parser::DFParser;
    let plain = SessionContext::new();
    regression(&plain).await;
    let schemas = SessionContext::new();
    regression(&schemas).await;
    let catalog = |table: &datafusion_common::TableReference| {
        let df = futures::executor::block_on(schemas.table(table.table())).ok();
        Ok(df.map(|df| Relation::Table(std::sync::Arc::new(df.schema().as_arrow().clone()))))
    };
    let body = LOSS.replace(" AS l ", " ");
    let (gradient, loss) = (closed_form(), closed_form_loss());
    for (statement, served) in [
        (
            format!(
                "WITH loss AS ({LOSS}) SELECT 0 AS t, i, grad((SELECT l FROM loss), w) AS g FROM w \
                 UNION ALL SELECT 1, 0, l FROM loss ORDER BY t, i"
            ),
            true,
        ),
        // Named by the expression's column list, and read inside the
        // derivative too (∂ ln l = ∂l / l).
        (
            format!(
                "WITH loss(l) AS ({body}) SELECT 0 AS t, i, \
                 grad(ln((SELECT l FROM loss)), w) * (SELECT l FROM loss) AS g FROM w \
                 UNION ALL SELECT 1, 0, l FROM loss ORDER BY t, i"
            ),
            true,
        ),
        // Not the expression read whole: computed by the host.
        (
            format!(
                "WITH loss AS ({LOSS}) SELECT 0 AS t, i, 0.5 * grad((SELECT 2 * l FROM loss), w) AS g \
                 FROM w UNION ALL SELECT 1, 0, l FROM loss ORDER BY t, i"
            ),
            false,
        ),
        (
            format!(
                "WITH loss AS ({}, COUNT(*) AS n {}) SELECT 0 AS t, i, grad((SELECT l FROM loss), w) AS g \
                 FROM w UNION ALL SELECT 1, n - 3, l FROM loss ORDER BY t, i",
                &LOSS[..LOSS.find(" FROM").unwrap()],
                &LOSS[LOSS.find(" FROM").unwrap()..]
            ),
            false,
        ),
    ] {
        for serves in [true, false] {
            let mut place = Registering::new(&plain, serves);
            let text = rewrite_sql_with(&statement, &catalog, &Default::default(), &mut place)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
            DFParser::parse_sql(&text).unwrap_or_else(|e| panic!("`{text}` does not parse: {e}"));
            let computes_the_loss = text.contains("AVG(power(");
            let last = place.named.clone().expect("placed");
            let read_from_the_pass = text.contains(&format!("(SELECT * FROM {last})"));
            assert_eq!(
                (computes_the_loss, read_from_the_pass),
                (!(served && serves), served && serves),
                "{text}"
            );
            let got = rows(&plain, &text).await;
            assert_eq!(got.len(), 4, "{text}");
            for (k, g) in gradient.iter().enumerate() {
                assert_close(got[k][2].unwrap(), *g, 1e-12, &format!("∂/∂w{k} of {text}"));
            }
            assert_eq!(got[3][1], Some(0.0), "{text}");
            assert_close(got[3][2].unwrap(), loss, 1e-12, &format!("the loss of {text}"));
        }
    }
}

/// A table a marker's gradient is read at, and no other gradient, is read
/// from the gradient's table alone, which holds every row of the table, all
/// its columns and the row's gradient: repeated rows, NULL values and
/// aliases as they were; two gradients read at one table are joined to it.
#[tokio::test]
async fn a_table_read_at_one_gradient_is_that_gradients_table() {
    use datafusion_autograd::{rewrite_sql, rewrite_sql_with, Relation};
    let plain = SessionContext::new();
    run(
        &plain,
        "CREATE TABLE d (i BIGINT, w DOUBLE) AS VALUES (0, 1.0), (0, 1.0), (NULL, 2.0), (1, -0.5)",
    )
    .await;
    run(
        &plain,
        "CREATE TABLE e (i BIGINT, c DOUBLE) AS VALUES (0, 10.0), (1, 20.0)",
    )
    .await;
    let schemas = SessionContext::new();
    run(&schemas, "CREATE TABLE d (i BIGINT, w DOUBLE)").await;
    run(&schemas, "CREATE TABLE e (i BIGINT, c DOUBLE)").await;
    let catalog = |table: &datafusion_common::TableReference| {
        let df = futures::executor::block_on(schemas.table(table.table())).ok();
        Ok(df.map(|df| Relation::Table(std::sync::Arc::new(df.schema().as_arrow().clone()))))
    };
    // ∂/∂w of Σ w³ is 3w² at every row; of Σ w² 2w.
    let cubes = "(SELECT SUM(w * w * w) FROM d)";
    let squares = "(SELECT SUM(w * w) FROM d)";
    for (statement, alone) in [
        (
            format!("SELECT w, grad({cubes}, w) AS g, 0.0 AS h FROM d"),
            true,
        ),
        (
            format!("SELECT q.w, grad({cubes}, q.w) AS g, 0.0 AS h FROM d AS q"),
            true,
        ),
        (
            format!("SELECT q.w, grad({cubes}, q.w) AS g, 0.0 AS h FROM d q"),
            true,
        ),
        (
            format!(
                "SELECT d.w, grad({cubes}, d.w) AS g, e.c - e.c AS h FROM d JOIN e ON d.i = e.i"
            ),
            true,
        ),
        (
            format!("SELECT w, grad({cubes}, w) AS g, grad({squares}, w) - 2 * w AS h FROM d"),
            false,
        ),
    ] {
        let mut registering = Registering::new(&plain, true);
        for text in [
            rewrite_sql(&statement, &catalog, &Default::default()).unwrap(),
            rewrite_sql_with(&statement, &catalog, &Default::default(), &mut registering).unwrap(),
        ] {
            assert_eq!(!text.contains("LEFT JOIN"), alone, "{text}");
            let got = rows(&plain, &format!("SELECT * FROM ({text}) ORDER BY w")).await;
            let mut expected: Vec<f64> = if statement.contains("JOIN e") {
                vec![1.0, 1.0, -0.5]
            } else {
                vec![1.0, 1.0, 2.0, -0.5]
            };
            expected.sort_by(f64::total_cmp);
            assert_eq!(got.len(), expected.len(), "{text}");
            for (row, w) in got.iter().zip(&expected) {
                assert_eq!(row[0], Some(*w), "{text}");
                assert_close(row[1].unwrap(), 3.0 * w * w, 1e-12, &text);
                assert_close(row[2].unwrap(), 0.0, 1e-12, &text);
            }
        }
    }
}
