//! `gradient()`: gradients of whole queries, checked against central finite
//! differences of the loss (every parameter row perturbed in turn, the loss
//! re-run by DataFusion) and against closed forms written here in Rust.

use datafusion::execution::config::SessionConfig;
use datafusion::prelude::SessionContext;

use crate::common::{assert_close, column, error, rows, Rng};

/// A context with the markers and `gradient`, and `target_partitions` set.
fn context_with(partitions: usize) -> SessionContext {
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    datafusion_autograd::register(&ctx);
    ctx
}

async fn run(ctx: &SessionContext, sql: &str) {
    rows(ctx, sql).await;
}

/// `VALUES` rows of numbers, each formatted exactly.
fn values(rows: &[Vec<f64>]) -> String {
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Random tables for the losses below:
/// - `w(i, w)`: a weight per feature, `b(k, b)`: a bias per class,
///   `m(i, k, w)`: a weight per feature and class;
/// - `x(s, i, v)`: features per sample, `y(s, t, c)`: a target, a class and
///   a sign per sample.
async fn problem(ctx: &SessionContext, seed: u64) {
    let mut rng = Rng::new(seed);
    let (features, samples, classes) = (4, 5, 3);
    let (mut w, mut b, mut m, mut x, mut y) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..features {
        w.push(vec![i as f64, rng.uniform(-1.0, 1.0)]);
        for k in 0..classes {
            m.push(vec![i as f64, k as f64, rng.uniform(-1.0, 1.0)]);
        }
    }
    for k in 0..classes {
        b.push(vec![k as f64, rng.uniform(-0.5, 0.5)]);
    }
    for s in 0..samples {
        for i in 0..features {
            x.push(vec![s as f64, i as f64, rng.uniform(-2.0, 2.0)]);
        }
        y.push(vec![s as f64, rng.uniform(-1.0, 1.0), (s % classes) as f64]);
    }
    for (name, schema, data) in [
        ("w", "i BIGINT, w DOUBLE", &w),
        ("b", "k BIGINT, b DOUBLE", &b),
        ("m", "i BIGINT, k BIGINT, w DOUBLE", &m),
        ("x", "s BIGINT, i BIGINT, v DOUBLE", &x),
        ("y", "s BIGINT, t DOUBLE, c BIGINT", &y),
    ] {
        run(ctx, &format!("DROP TABLE IF EXISTS {name}")).await;
        let casts: Vec<String> = schema
            .split(", ")
            .enumerate()
            .map(|(k, decl)| {
                let (col, ty) = decl.split_once(' ').unwrap();
                format!("CAST(column{} AS {ty}) AS {col}", k + 1)
            })
            .collect();
        run(
            ctx,
            &format!(
                "CREATE TABLE {name} AS SELECT {} FROM (VALUES {})",
                casts.join(", "),
                values(data)
            ),
        )
        .await;
    }
}

/// `(key, grad)` of every row of `table`, ordered by key.
async fn gradient_rows(
    ctx: &SessionContext,
    loss: &str,
    table: &str,
    column: &str,
    key: &str,
) -> Vec<(String, f64)> {
    let sql = format!(
        "SELECT CAST({key} AS VARCHAR) AS key, grad FROM gradient('{}', '{table}.{column}') ORDER BY key",
        loss.replace('\'', "''")
    );
    let batches = ctx
        .sql(&sql)
        .await
        .unwrap_or_else(|e| panic!("planning `{sql}` failed: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("running `{sql}` failed: {e}"));
    let mut out = vec![];
    for batch in batches {
        let keys = datafusion::arrow::compute::cast(
            batch.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let keys = keys
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let grads = batch
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .unwrap();
        for r in 0..batch.num_rows() {
            out.push((keys.value(r).to_string(), grads.value(r)));
        }
    }
    out
}

/// Checks `gradient(loss, table.column)` against central differences: each
/// row's `column` moved by ±h in turn (rows told apart by `key`), the loss
/// re-run.
async fn check_against_finite_differences(
    ctx: &SessionContext,
    loss: &str,
    table: &str,
    column: &str,
    key: &str,
) {
    let grads = gradient_rows(ctx, loss, table, column, key).await;
    let total: usize = column_count(ctx, table).await;
    assert_eq!(
        grads.len(),
        total,
        "{loss}: one gradient per row of {table}"
    );
    run(
        ctx,
        &format!("CREATE TABLE base_{table} AS SELECT * FROM {table}"),
    )
    .await;
    let columns = column_names(ctx, table).await;
    let h = 1e-6;
    for (k, g) in &grads {
        let mut shifted = vec![];
        for step in [h, -h] {
            let exprs: Vec<String> = columns
                .iter()
                .map(|c| {
                    if c == column {
                        format!("CASE WHEN CAST({key} AS VARCHAR) = '{k}' THEN {c} + ({step:?}) ELSE {c} END AS {c}")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            run(ctx, &format!("DROP TABLE {table}")).await;
            run(
                ctx,
                &format!(
                    "CREATE TABLE {table} AS SELECT {} FROM base_{table}",
                    exprs.join(", ")
                ),
            )
            .await;
            shifted.push(crate::common::column(ctx, loss).await[0]);
        }
        let difference = (shifted[0] - shifted[1]) / (2.0 * h);
        assert_close(
            *g,
            difference,
            1e-5,
            &format!("∂({loss})/∂{table}.{column}[{key}={k}]"),
        );
    }
    run(ctx, &format!("DROP TABLE {table}")).await;
    run(
        ctx,
        &format!("CREATE TABLE {table} AS SELECT * FROM base_{table}"),
    )
    .await;
    run(ctx, &format!("DROP TABLE base_{table}")).await;
}

async fn column_count(ctx: &SessionContext, table: &str) -> usize {
    column(
        ctx,
        &format!("SELECT CAST(COUNT(*) AS DOUBLE) FROM {table}"),
    )
    .await[0] as usize
}

async fn column_names(ctx: &SessionContext, table: &str) -> Vec<String> {
    let df = ctx.table(table).await.unwrap();
    df.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// A loss, and the parameter it is differentiated by: (loss, table, column, key).
type Case = (&'static str, &'static str, &'static str, &'static str);

/// One loss per operator and combinations of them.
const LOSSES: &[Case] = &[
    // projection and SUM
    ("SELECT SUM(w * w * 0.5 + sin(w) * i) FROM w", "w", "w", "i"),
    // filters: on another column, and on the parameter itself (piecewise constant)
    ("SELECT SUM(exp(w)) FROM w WHERE i % 2 = 0", "w", "w", "i"),
    ("SELECT SUM(w * w) FROM w WHERE w > -0.2", "w", "w", "i"),
    // inner join, GROUP BY and AVG: linear regression
    (
        "SELECT AVG(power(p.pred - y.t, 2)) FROM \
         (SELECT x.s, SUM(x.v * w.w) AS pred FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
         JOIN y ON p.s = y.s",
        "w",
        "w",
        "i",
    ),
    // a cross join of the parameter with itself
    ("SELECT SUM(a.w * b.w * (a.i + 1)) FROM w a CROSS JOIN w b", "w", "w", "i"),
    ("SELECT SUM(a.w * tanh(b.w)) FROM w a, w b WHERE a.i < b.i", "w", "w", "i"),
    // MAX and MIN per group, AVG and MIN of groups
    (
        "SELECT SUM(m) FROM (SELECT x.s, MAX(x.v * w.w) AS m FROM x JOIN w ON x.i = w.i GROUP BY x.s) t",
        "w",
        "w",
        "i",
    ),
    (
        "SELECT AVG(a) + MIN(a) FROM \
         (SELECT x.s, AVG(x.v * w.w) + MIN(x.v + w.w) AS a FROM x JOIN w ON x.i = w.i GROUP BY x.s) t",
        "w",
        "w",
        "i",
    ),
    // COUNT passes nothing; FILTER selects the rows reduced
    ("SELECT SUM(w) * COUNT(w) + COUNT(*) FROM w", "w", "w", "i"),
    (
        "SELECT SUM(x.v * w.w) FILTER (WHERE x.v > 0) + AVG(w.w * w.w) FILTER (WHERE x.s > 1) \
         FROM x JOIN w ON x.i = w.i",
        "w",
        "w",
        "i",
    ),
    // window functions over whole partitions
    (
        "SELECT SUM(w * a + mn + mx * s) FROM \
         (SELECT w, AVG(w) OVER () AS a, MIN(w * (i + 1)) OVER (PARTITION BY i % 2) AS mn, \
                 MAX(sin(w)) OVER (PARTITION BY i % 2) AS mx, SUM(w * w) OVER (PARTITION BY i < 2) AS s \
          FROM w) t",
        "w",
        "w",
        "i",
    ),
    // softmax regression: logits by join and GROUP BY, log-softmax by windows
    (
        "WITH z AS (SELECT x.s, m.k, SUM(x.v * m.w) + b.b AS z \
                    FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b), \
              shifted AS (SELECT s, k, z - MAX(z) OVER (PARTITION BY s) AS z FROM z), \
              logp AS (SELECT s, k, z - ln(SUM(exp(z)) OVER (PARTITION BY s)) AS logp FROM shifted) \
         SELECT -AVG(logp.logp) FROM logp JOIN y ON logp.s = y.s AND logp.k = y.c",
        "m",
        "w",
        "i * 10 + k",
    ),
    (
        "WITH z AS (SELECT x.s, m.k, SUM(x.v * m.w) + b.b AS z \
                    FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b), \
              p AS (SELECT s, k, exp(z) / SUM(exp(z)) OVER (PARTITION BY s) AS p FROM z) \
         SELECT -AVG(ln(p.p)) FROM p JOIN y ON p.s = y.s AND p.k = y.c",
        "b",
        "b",
        "k",
    ),
    // UNION ALL, with a branch that does not read the parameter
    (
        "SELECT SUM(v * v) FROM (SELECT w * 2 AS v FROM w UNION ALL SELECT w * i AS v FROM w WHERE i > 0 \
                                UNION ALL SELECT v FROM x) u",
        "w",
        "w",
        "i",
    ),
    // CTEs, subquery aliases and ORDER BY
    (
        "WITH t AS (SELECT i, w * 3 AS w3 FROM w), u AS (SELECT * FROM t ORDER BY w3) \
         SELECT SUM(q.w3 * q.w3 * r.w3) FROM u q JOIN t r ON q.i = r.i",
        "w",
        "w",
        "i",
    ),
    // an uncorrelated scalar subquery: the variance of the weights
    ("SELECT SUM(power(w - (SELECT AVG(w) FROM w), 2)) FROM w", "w", "w", "i"),
    // markers inside the loss are differentiated first
    ("SELECT SUM(grad(w * w * w, w) + vjp(exp(w), w, i)) FROM w", "w", "w", "i"),
    // logistic regression with a bias table
    (
        "SELECT AVG(ln(1 + exp(-signum(y.t) * (p.z + b.b)))) FROM \
         (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
         JOIN y ON p.s = y.s CROSS JOIN (SELECT b FROM b WHERE k = 0) b",
        "w",
        "w",
        "i",
    ),
];

#[tokio::test]
async fn every_operator_matches_finite_differences() {
    for seed in [1, 2] {
        let ctx = context_with(4);
        problem(&ctx, seed).await;
        run(&ctx, "CREATE VIEW wv AS SELECT i, w * 3 AS w3 FROM w").await;
        for (loss, table, col, key) in LOSSES {
            check_against_finite_differences(&ctx, loss, table, col, key).await;
        }
    }
}

#[tokio::test]
async fn linear_regression_matches_its_closed_form() {
    let ctx = context_with(4);
    problem(&ctx, 7).await;
    let (loss, ..) = LOSSES[3];
    let got = gradient_rows(&ctx, loss, "w", "w", "i").await;
    let w = rows(&ctx, "SELECT w FROM w ORDER BY i").await;
    let x = rows(&ctx, "SELECT v FROM x ORDER BY s, i").await;
    let y = rows(&ctx, "SELECT t FROM y ORDER BY s").await;
    let (n, f) = (y.len(), w.len());
    let mut expected = vec![0.0; f];
    for s in 0..n {
        let pred: f64 = (0..f)
            .map(|i| x[s * f + i][0].unwrap() * w[i][0].unwrap())
            .sum();
        for i in 0..f {
            expected[i] += 2.0 / n as f64 * (pred - y[s][0].unwrap()) * x[s * f + i][0].unwrap();
        }
    }
    for i in 0..f {
        assert_close(got[i].1, expected[i], 1e-12, &format!("∂loss/∂w{i}"));
    }
}

#[tokio::test]
async fn same_gradient_at_one_and_eight_partitions() {
    let mut results = vec![];
    for partitions in [1, 8] {
        let ctx = context_with(partitions);
        problem(&ctx, 3).await;
        run(&ctx, "CREATE VIEW wv AS SELECT i, w * 3 AS w3 FROM w").await;
        let mut all = vec![];
        for (loss, table, col, key) in LOSSES {
            all.push(gradient_rows(&ctx, loss, table, col, key).await);
        }
        results.push(all);
    }
    for (case, (one, eight)) in results[0].iter().zip(&results[1]).enumerate() {
        assert_eq!(one.len(), eight.len());
        for ((k1, g1), (k8, g8)) in one.iter().zip(eight) {
            assert_eq!(k1, k8);
            assert_close(*g1, *g8, 1e-12, &format!("{} at key {k1}", LOSSES[case].0));
        }
    }
}

/// `(loss, parameter, what the error must say)`.
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "SELECT SUM(w) FROM (SELECT w FROM w ORDER BY w LIMIT 2) t",
        "w.w",
        "cannot differentiate through Limit",
    ),
    (
        "SELECT SUM(w) FROM (SELECT w FROM w LIMIT 2) t",
        "w.w",
        "cannot differentiate through Limit",
    ),
    (
        "SELECT SUM(w) FROM (SELECT DISTINCT w FROM w) t",
        "w.w",
        "cannot differentiate through",
    ),
    (
        "SELECT SUM(w.w * x.v) FROM x LEFT JOIN w ON x.i = w.i",
        "w.w",
        "a Left join adds or drops rows",
    ),
    (
        "SELECT SUM(r) FROM (SELECT SUM(w) OVER (ORDER BY i) AS r FROM w) t",
        "w.w",
        "reduces a running frame",
    ),
    (
        "SELECT stddev(w) FROM w",
        "w.w",
        "the aggregate function `stddev` has no reverse rule",
    ),
    (
        "SELECT SUM(DISTINCT w) FROM w",
        "w.w",
        "reduces DISTINCT values",
    ),
    (
        "SELECT SUM(v) FROM (SELECT x.v * (SELECT MAX(w.w) FROM w WHERE w.i = x.i) AS v FROM x) t",
        "w.w",
        "correlated subquery",
    ),
    (
        "SELECT SUM(l) FROM (SELECT lag(w) OVER (ORDER BY i) AS l FROM w) t",
        "w.w",
        "has no reverse rule",
    ),
    (
        "SELECT SUM(w * random()) FROM w",
        "w.w",
        "returns new values each time",
    ),
    (
        "SELECT SUM(w), COUNT(w) FROM w",
        "w.w",
        "must return one column",
    ),
    (
        "SELECT i, SUM(w) FROM w GROUP BY i",
        "w.w",
        "must return one column",
    ),
    (
        "SELECT SUM(w) FROM w GROUP BY i",
        "w.w",
        "must return exactly one row",
    ),
    ("SELECT w FROM w", "w.w", "must return exactly one row"),
    (
        "SELECT CAST(SUM(w) AS VARCHAR) FROM w",
        "w.w",
        "the loss must be numeric",
    ),
    (
        "SELECT SUM(w) FROM w",
        "w.nope",
        "the table w has no column `nope`",
    ),
    ("SELECT SUM(w) FROM w", "nope.w", "table 'nope' not found"),
    ("SELECT SUM(w) FROM w", "w", "must be written table.column"),
    ("SELECT SUM(w) FROM nope", "w.w", "nope"),
    (
        "SELECT SUM(grad * grad) FROM gradient('SELECT SUM(w * w * w) FROM w', 'w.w')",
        "w.w",
        "it reads the result of gradient()",
    ),
];

#[tokio::test]
async fn unsupported_operators_are_errors_that_name_them() {
    let ctx = context_with(4);
    problem(&ctx, 5).await;
    run(
        &ctx,
        "CREATE TABLE labels (i BIGINT, name VARCHAR) AS VALUES (0, 'a')",
    )
    .await;
    for (loss, wrt, message) in UNSUPPORTED {
        let sql = format!(
            "SELECT * FROM gradient('{}', '{wrt}')",
            loss.replace('\'', "''")
        );
        let e = error(&ctx, &sql).await;
        println!("{loss}\n  -> {e}");
        assert!(
            e.contains(message),
            "{loss}: expected “{message}”, got: {e}"
        );
    }
    let e = error(&ctx, "SELECT * FROM gradient('SELECT 1', 'labels.name')").await;
    assert!(e.contains("must be numeric to differentiate by"), "{e}");
    let e = error(&ctx, "SELECT * FROM gradient('SELECT 1')").await;
    assert!(e.contains("takes 2 arguments, got 1"), "{e}");
    let e = error(&ctx, "SELECT * FROM gradient(1, 'w.w')").await;
    assert!(e.contains("takes two string literals"), "{e}");
}

/// The SQL a host without the table function runs (stages as tables, then
/// the query) computes the same gradient as the table function: every SQL
/// text the reverse pass emits reads back as the plan it stands for.
#[tokio::test]
async fn gradient_sql_reads_back_as_the_same_gradient() {
    use datafusion_autograd::relational::gradient_sql;
    use datafusion_autograd::Relation;
    let ctx = context_with(4);
    problem(&ctx, 11).await;
    run(&ctx, "CREATE VIEW wv AS SELECT i, w * 3 AS w3 FROM w").await;
    let catalog = |table: &datafusion_common::TableReference| {
        let name = table.table().to_string();
        let schema = futures::executor::block_on(ctx.table(name.as_str()))
            .ok()
            .map(|df| std::sync::Arc::new(df.schema().as_arrow().clone()));
        Ok(schema.map(Relation::Table))
    };
    for (loss, table, col, key) in LOSSES {
        let native = gradient_rows(&ctx, loss, table, col, key).await;
        let staged = gradient_sql(
            loss,
            &format!("{table}.{col}"),
            &catalog,
            &Default::default(),
        )
        .unwrap();
        for statement in &staged.stages {
            run(&ctx, statement).await;
        }
        let got = rows(
            &ctx,
            &format!(
                "SELECT CAST({key} AS VARCHAR) AS key, grad FROM ({}) ORDER BY key",
                staged.query
            ),
        )
        .await;
        for name in &staged.tables {
            ctx.deregister_table(name.as_str()).unwrap();
        }
        assert_eq!(got.len(), native.len(), "{loss}");
        for (row, (_, g)) in got.iter().zip(&native) {
            assert_close(row[1].unwrap(), *g, 1e-12, &format!("{loss} as SQL"));
        }
    }
}
