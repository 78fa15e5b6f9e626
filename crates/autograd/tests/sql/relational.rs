//! `gradient()`: gradients of whole queries, checked against central finite
//! differences of the loss (every parameter row perturbed in turn, the loss
//! re-run by DataFusion) and against closed forms written here in Rust.

use datafusion::execution::config::SessionConfig;
use datafusion::prelude::SessionContext;

use crate::common::{analyzed, assert_close, column, error, parameter, rows, text, Rng};

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
            // A view holds the table it was created over: created again.
            create_views(ctx).await;
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
    create_views(ctx).await;
}

/// Views the losses read: `(name, query)`.
const VIEWS: &[(&str, &str)] = &[("wv", "SELECT i, w * 3 AS w3 FROM w")];

/// Creates (again) every view of [`VIEWS`] over the tables as they are now.
async fn create_views(ctx: &SessionContext) {
    for (name, sql) in VIEWS {
        run(ctx, &format!("CREATE OR REPLACE VIEW {name} AS {sql}")).await;
    }
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
    // a view of the parameter's table
    ("SELECT SUM(w3 * w3 * i) FROM wv", "w", "w", "i"),
    // markers inside the loss are differentiated first
    ("SELECT SUM(grad(w * w * w, w) + vjp(exp(w), w, i)) FROM w", "w", "w", "i"),
    // a parameter's column as a group key, each group's rows from one row of
    // its table: b's columns are keys, or equal to one through the join
    (
        "SELECT SUM(h * h) FROM (SELECT x.s, b.k, b.b, tanh(SUM(x.v * m.w) + b.b) AS h \
         FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, b.k, b.b) q",
        "b",
        "b",
        "k",
    ),
    (
        "SELECT SUM(h * h) FROM (SELECT x.s, m.k, tanh(SUM(x.v * m.w) + b.b) AS h \
         FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b) q",
        "b",
        "b",
        "k",
    ),
    // ... with the group's sum reading the parameter too: the key's
    // contributions are summed per group with the sum's
    (
        "SELECT SUM(h * h) FROM (SELECT x.s, m.k, tanh(SUM(x.v * m.w * b.b) + b.b) AS h \
         FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b) q",
        "b",
        "b",
        "k",
    ),
    // ... not so: b.k is no key, so the groups' rows are visited
    (
        "SELECT SUM(z * z) FROM (SELECT b.b, SUM(x.v) * b.b AS z FROM x CROSS JOIN b \
         GROUP BY b.b) q",
        "b",
        "b",
        "k",
    ),
    // ... nor here, where the key and the equal column come from two readings
    // of one relation
    (
        "WITH bb AS (SELECT k, b FROM b) SELECT SUM(t * t) FROM \
         (SELECT p.k, q.b, SUM(p.b) * q.b + q.b AS t FROM bb p JOIN bb q ON p.k = q.k + 1 \
          GROUP BY p.k, q.b) r",
        "b",
        "b",
        "k",
    ),
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
        create_views(&ctx).await;
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

/// The join of a reduction's contributions back onto its input's rows
/// builds its hash table of the groups, never of the input: the input, a
/// join of tables computed again, is as large as the loss's data, and the
/// planner's estimate of it from the tables' row counts (`x.i` taken for
/// unique) is a few rows.
#[tokio::test]
async fn the_join_back_onto_a_reductions_input_builds_on_the_groups() {
    let ctx = context_with(2);
    problem(&ctx, 7).await;
    let (loss, ..) = LOSSES[3];
    let sql = format!(
        "EXPLAIN SELECT * FROM gradient('{}', 'w.w')",
        loss.replace('\'', "''")
    );
    let text = text(&ctx, &sql).await;
    let joins: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HashJoinExec"))
        .collect();
    let back = joins
        .iter()
        .find(|l| l.contains("__ag_key") && !l.contains("join_type=Left"))
        .unwrap_or_else(|| panic!("no join back onto the input's rows in\n{text}"));
    let build = back.split("on=[(").nth(1).unwrap_or_default();
    assert!(
        build.starts_with("__ag_key"),
        "the join back builds on the input's rows:\n{text}"
    );
}

/// Every join of a reduction's summed contributions back onto the rows it
/// reduced builds its hash table of the sums, whatever the planner estimates
/// of the two sides: a two-layer network over tables whose keys carry no
/// statistics, where DataFusion takes the first layer's join of `x` with `m`
/// and `b` for fewer rows than the second layer's groups.
#[tokio::test]
async fn every_join_back_builds_on_the_groups() {
    let ctx = context_with(2);
    problem(&ctx, 7).await;
    create_views(&ctx).await;
    let network = "SELECT SUM(o * o) FROM (SELECT h.s, SUM(h.h * n.w) AS o FROM \
                   (SELECT x.s, m.k, tanh(SUM(x.v * m.w) + b.b) AS h \
                    FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b) h \
                   JOIN m n ON h.k = n.k GROUP BY h.s) q";
    let cases = LOSSES
        .iter()
        .map(|(loss, table, col, _)| (*loss, *table, *col))
        .chain([(network, "m", "w"), (network, "b", "b")]);
    let mut back = 0;
    for (loss, table, col) in cases {
        let sql = format!(
            "EXPLAIN SELECT * FROM gradient('{}', '{table}.{col}')",
            loss.replace('\'', "''")
        );
        let text = text(&ctx, &sql).await;
        for line in text.lines().filter(|l| l.contains("HashJoinExec")) {
            let on = line.split("on=[(").nth(1).unwrap_or_default();
            let on = on.split(")]").next().unwrap_or_default();
            let pairs: Vec<(bool, bool)> = on
                .split("), (")
                .map(|pair| {
                    let (build, probe) = pair.split_once(", ").unwrap_or((pair, ""));
                    (build.starts_with("__ag_key"), probe.starts_with("__ag_key"))
                })
                .collect();
            let groups_build = pairs.iter().all(|&(b, p)| b && !p);
            let groups_probe = pairs.iter().all(|&(b, p)| !b && p);
            assert!(
                !groups_probe,
                "{loss}: a join back builds on the input's rows:\n{text}"
            );
            back += usize::from(groups_build);
        }
    }
    assert!(back > 0, "no join back onto a reduction's input was found");
}

/// The joins of the reverse pass that pair rows of `x` with rows of
/// `table` one by one (the other side reads `x` and sums nothing).
fn row_joins(staged: &datafusion_autograd::relational::Staged, table: &str) -> usize {
    use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion_expr::LogicalPlan;
    let reads = |plan: &LogicalPlan| {
        let (mut tables, mut sums) = (std::collections::HashSet::new(), false);
        plan.apply(|node| {
            match node {
                LogicalPlan::TableScan(scan) => {
                    tables.insert(scan.table_name.table().to_string());
                }
                LogicalPlan::Aggregate(_) => sums = true,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        (tables, sums)
    };
    let mut count = 0;
    for plan in staged.stages.iter().map(|s| &s.plan).chain(&staged.results) {
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Join(join) = node {
                let sides = [reads(&join.left), reads(&join.right)];
                for (one, other) in [(&sides[0], &sides[1]), (&sides[1], &sides[0])] {
                    let only_table = one.0.len() == 1 && one.0.contains(table);
                    if only_table && other.0.contains("x") && !other.1 {
                        count += 1;
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
    }
    count
}

/// Contributions to a parameter's rows that depend on no column of the
/// parameter's table are summed per join key over the other side's rows and
/// then joined with the table, so the reverse pass never pairs the rows of
/// `x` with the table's again: only the forward pass does. Right where the
/// table holds several rows with one key, a key no row of `x` has, a NULL
/// key that a join on `IS NOT DISTINCT FROM` matches and a NULL value (whose
/// rows no sum counts: its gradient is 0, as before); for a network's first
/// layer, whose weights' rows are joined with the bias's and then met by the
/// hidden groups' keys, and for its bias; and where the contribution reads
/// the table's own column, it is not summed first.
#[tokio::test]
async fn contributions_are_summed_per_key_before_the_join_with_the_parameter() {
    let ctx = context_with(2);
    problem(&ctx, 7).await;
    run(
        &ctx,
        "CREATE TABLE d AS SELECT CAST(column1 AS BIGINT) AS r, CAST(column2 AS BIGINT) AS i, \
         CAST(column3 AS DOUBLE) AS w \
         FROM (VALUES (0, 0, 0.3), (1, 0, -0.7), (2, 1, 0.5), (3, NULL, 0.9), (4, 7, 0.2), (5, 1, NULL))",
    )
    .await;
    let (linear, ..) = LOSSES[3];
    let shared = "SELECT AVG(power(p.pred - y.t, 2)) FROM \
                  (SELECT x.s, SUM(x.v * d.w) AS pred FROM \
                   (SELECT s, CASE WHEN i = 3 THEN NULL ELSE i END AS i, v FROM x) x \
                   JOIN d ON x.i IS NOT DISTINCT FROM d.i GROUP BY x.s) p \
                  JOIN y ON p.s = y.s";
    let logistic = "SELECT AVG(ln(1 + exp(p.z)) - y.c * p.z) FROM \
                    (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
                    JOIN y ON p.s = y.s";
    // ∂tanh(x.v · w.w)/∂w.w reads w.w: summed per row of w after the join.
    let inside = "SELECT SUM(z * z) FROM \
                  (SELECT x.s, SUM(tanh(x.v * w.w)) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p";
    // A network's first layer: its weights `m` joined with `x`, then with
    // the bias `b` on `m.k = b.k`, and the hidden groups joined back on
    // `(x.s, m.k, b.b)`; its second layer reads `m` again.
    let network = "SELECT SUM(o * o) FROM (SELECT h.s, SUM(h.h * n.w) AS o FROM \
                   (SELECT x.s, m.k, tanh(SUM(x.v * m.w) + b.b) AS h \
                    FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b) h \
                   JOIN m n ON h.k = n.k GROUP BY h.s) q";
    for (loss, table, column, key, joins) in [
        (linear, "w", "w", "i", 1),
        (logistic, "w", "w", "i", 1),
        (shared, "d", "w", "r", 1),
        (inside, "w", "w", "i", 2),
        (network, "m", "w", "i * 10 + k", 1),
        (network, "b", "b", "k", 1),
    ] {
        check_against_finite_differences(&ctx, loss, table, column, key).await;
        let staged = datafusion_autograd::relational::gradient(
            &analyzed(&ctx, loss).await,
            &parameter(&ctx, table, column).await,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            row_joins(&staged, table),
            joins,
            "{loss}: joins of x's rows with {table}'s"
        );
    }
}

/// A stage is kept only where several plans read it: one read once is
/// written out where it is read.
#[tokio::test]
async fn every_stage_is_read_more_than_once() {
    use datafusion_autograd::relational::{gradient, StageSource};
    use datafusion_common::tree_node::TreeNodeRecursion;
    let ctx = context_with(2);
    problem(&ctx, 7).await;
    create_views(&ctx).await;
    for (loss, table, col, _) in LOSSES {
        let staged = gradient(
            &analyzed(&ctx, loss).await,
            &parameter(&ctx, table, col).await,
            &Default::default(),
        )
        .unwrap();
        let mut reads = std::collections::HashMap::new();
        let plans = staged.stages.iter().map(|s| &s.plan).chain(&staged.results);
        for plan in plans {
            plan.apply_with_subqueries(|node| {
                if let datafusion_expr::LogicalPlan::TableScan(scan) = node {
                    if let Some(stage) = StageSource::of(&scan.source) {
                        *reads.entry(stage.name().to_string()).or_insert(0) += 1;
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        }
        for stage in &staged.stages {
            let n = reads.get(&stage.name).copied().unwrap_or(0);
            assert!(
                n > 1,
                "{loss}: the stage {} is read {n} time(s)",
                stage.name
            );
        }
    }
}

/// The input of a reduction that joins the groups of another with a table on
/// some of the groups' keys — a layer's outputs with the next layer's weights
/// — is computed again from the kept groups by each reader, not kept whole:
/// no stage is a join. Joined on all of their keys — a sample's prediction
/// with its target — the join is no larger than the groups and is kept.
#[tokio::test]
async fn a_join_that_multiplies_kept_groups_is_computed_again() {
    let multiplied = "SELECT SUM(h.h * m.w) FROM \
                      (SELECT x.s, x.i, tanh(SUM(x.v * w.w)) AS h FROM x JOIN w ON x.i = w.i \
                       GROUP BY x.s, x.i) h JOIN m ON h.i = m.i";
    // As a network's layer is: a key (the bias) that only the output reads.
    let biased = "SELECT SUM(h.h * m.w) FROM \
                  (SELECT x.s, x.i, tanh(SUM(x.v * w.w) + y.t) AS h \
                   FROM x JOIN w ON x.i = w.i JOIN y ON x.s = y.s \
                   GROUP BY x.s, x.i, y.t) h JOIN m ON h.i = m.i";
    let matched = "SELECT AVG(power(p.z - y.t, 2)) FROM \
                   (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p \
                   JOIN y ON p.s = y.s";
    let ctx = context_with(2);
    problem(&ctx, 7).await;
    for (loss, tables, keeps_a_join) in [
        (multiplied, &[("w", "i"), ("m", "i * 10 + k")][..], false),
        (biased, &[("w", "i"), ("m", "i * 10 + k")][..], false),
        (matched, &[("w", "i")][..], true),
    ] {
        for (table, key) in tables {
            check_against_finite_differences(&ctx, loss, table, "w", key).await;
            let staged = datafusion_autograd::relational::gradient(
                &analyzed(&ctx, loss).await,
                &parameter(&ctx, table, "w").await,
                &Default::default(),
            )
            .unwrap();
            let joins: Vec<&str> = staged
                .stages
                .iter()
                .filter(|stage| {
                    let mut node = &stage.plan;
                    while let datafusion_expr::LogicalPlan::Projection(p) = node {
                        node = p.input.as_ref();
                    }
                    matches!(node, datafusion_expr::LogicalPlan::Join(_))
                })
                .map(|stage| stage.name.as_str())
                .collect();
            assert_eq!(
                !joins.is_empty(),
                keeps_a_join,
                "{loss}, {table}: the stages that keep a join: {joins:?}"
            );
        }
    }
}

#[tokio::test]
async fn same_gradient_at_one_and_eight_partitions() {
    let mut results = vec![];
    for partitions in [1, 8] {
        let ctx = context_with(partitions);
        problem(&ctx, 3).await;
        create_views(&ctx).await;
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
        "cannot differentiate through Distinct",
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
    (
        "SELECT SUM(w) FROM nope",
        "w.w",
        "table 'datafusion.public.nope' not found",
    ),
    (
        "SELECT SUM(grad * grad) FROM gradient('SELECT SUM(w * w * w) FROM w', 'w.w')",
        "w.w",
        "the result of gradient(), whose dependence on the parameter is not followed",
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

/// The SQL text a host without the table function runs computes the same
/// gradient as the table function: every SQL text the reverse pass emits
/// reads back as the plan it stands for.
#[tokio::test]
async fn gradient_sql_reads_back_as_the_same_gradient() {
    use datafusion_autograd::{gradient_sql, Relation};
    let ctx = context_with(4);
    problem(&ctx, 11).await;
    create_views(&ctx).await;
    let catalog = |table: &datafusion_common::TableReference| {
        let name = table.table().to_string();
        if let Some((_, sql)) = VIEWS.iter().find(|(view, _)| *view == name) {
            return Ok(Some(Relation::View(sql.to_string())));
        }
        let schema = futures::executor::block_on(ctx.table(name.as_str()))
            .ok()
            .map(|df| std::sync::Arc::new(df.schema().as_arrow().clone()));
        Ok(schema.map(Relation::Table))
    };
    let plain = SessionContext::new();
    for name in ["w", "b", "m", "x", "y"] {
        let batches = ctx.table(name).await.unwrap().collect().await.unwrap();
        plain
            .register_batch(
                name,
                datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap(),
            )
            .unwrap();
    }
    create_views(&plain).await;
    for (loss, table, col, key) in LOSSES {
        let native = gradient_rows(&ctx, loss, table, col, key).await;
        let text = gradient_sql(
            loss,
            &format!("{table}.{col}"),
            &catalog,
            &Default::default(),
        )
        .unwrap();
        let got = rows(
            &plain,
            &format!("SELECT CAST({key} AS VARCHAR) AS key, grad FROM ({text}) ORDER BY key"),
        )
        .await;
        assert_eq!(got.len(), native.len(), "{loss}");
        for (row, (_, g)) in got.iter().zip(&native) {
            assert_close(row[1].unwrap(), *g, 1e-12, &format!("{loss} as SQL"));
        }
    }
}

/// Replaces `w` and `x` by the tables of the NULL cases: `w(i, w)` =
/// (0, 0.5), (1, -0.3) and `x(i, v)` = (0, 0.4), (1, NULL), (1, 0.2).
async fn null_problem(ctx: &SessionContext) {
    for name in ["w", "x"] {
        run(ctx, &format!("DROP TABLE IF EXISTS {name}")).await;
    }
    run(
        ctx,
        "CREATE TABLE w (i BIGINT, w DOUBLE) AS VALUES (0, 0.5), (1, -0.3)",
    )
    .await;
    run(
        ctx,
        "CREATE TABLE x (i BIGINT, v DOUBLE) AS VALUES (0, 0.4), (1, CAST(NULL AS DOUBLE)), (1, 0.2)",
    )
    .await;
}

/// A row not aggregated because its argument is NULL, or a window whose rows
/// are all filtered away further up, passes nothing: never a NULL gradient.
#[tokio::test]
async fn rows_that_reach_nothing_get_zero_not_null() {
    let cases = [
        (
            "SELECT SUM(q.z) FROM (SELECT x.v * w.w AS z FROM x JOIN w ON x.i = w.i) q",
            [0.4, 0.2],
        ),
        (
            "SELECT SUM(q.z) FROM (SELECT x.v * w.w AS z FROM x CROSS JOIN w) q",
            [0.6, 0.6],
        ),
        (
            "SELECT SUM(q.z) FROM (SELECT x.v * w.w - AVG(x.v * w.w) OVER (PARTITION BY x.i) AS z, \
             x.v * w.w AS p FROM x JOIN w ON x.i = w.i) q WHERE q.p IS NOT NULL OR q.p IS NULL",
            [0.0, 0.0],
        ),
        (
            "SELECT SUM(q.z) FROM (SELECT x.v * w.w AS z FROM x JOIN w ON x.i = w.i \
             WHERE x.v IS NULL OR x.v > 0) q",
            [0.4, 0.2],
        ),
        (
            "SELECT SUM(q.z) FROM (SELECT w.w AS z FROM w UNION ALL SELECT q2.z FROM \
             (SELECT w.w - AVG(w.w) OVER () AS z FROM w) q2 WHERE q2.z > 5) q",
            [1.0, 1.0],
        ),
        // Two reductions of one row, one of which does not count it.
        (
            "SELECT SUM(q.a) + SUM(q.b) FROM (SELECT w.w AS a, x.v * w.w AS b FROM x JOIN w ON x.i = w.i) q",
            [1.4, 2.2],
        ),
    ];
    let ctx = context_with(4);
    for (loss, expected) in cases {
        null_problem(&ctx).await;
        let got = gradient_rows(&ctx, loss, "w", "w", "i").await;
        for ((_, g), e) in got.iter().zip(expected) {
            assert_close(*g, e, 1e-12, loss);
        }
        check_against_finite_differences(&ctx, loss, "w", "w", "i").await;
    }
}

/// Where the loss is NULL, so is its gradient: finite differences of a NULL
/// loss are NULL too.
#[tokio::test]
async fn a_null_loss_has_a_null_gradient() {
    let ctx = context_with(4);
    null_problem(&ctx).await;
    let loss = "SELECT SUM(w.w) * MAX(x.v) FROM w CROSS JOIN x WHERE x.v IS NULL";
    let sql = format!("SELECT grad FROM gradient('{loss}', 'w.w')");
    let got = rows(&ctx, &sql).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r[0].is_none()), "{got:?}");
    assert!(rows(&ctx, loss).await[0][0].is_none());
}

/// `VALUES` anywhere in the loss, on the parameter's path or off it, and a
/// loss without `FROM`.
#[tokio::test]
async fn values_and_losses_without_from() {
    let ctx = context_with(4);
    problem(&ctx, 4).await;
    for loss in [
        "SELECT SUM(w.w * t.c) FROM w JOIN (VALUES (0, 1.5), (1, -0.5)) AS t(i, c) ON w.i = t.i",
        "SELECT SUM(w * w) * (SELECT COUNT(*) FROM (VALUES (1), (2)) AS v(k)) FROM w",
        "SELECT SUM(t.c * t.c) FROM (SELECT w AS c FROM w UNION ALL SELECT column1 FROM (VALUES (0.5), (2.0))) t",
        "SELECT (SELECT SUM(w * w) FROM w) * 2.0",
        "SELECT (SELECT SUM(w * w) FROM w) * (SELECT MAX(w) FROM w)",
    ] {
        check_against_finite_differences(&ctx, loss, "w", "w", "i").await;
    }
}

/// Semi and anti joins, `IN`/`NOT IN`/`EXISTS` subqueries, ranks and row
/// numbers on the parameter's path select or order rows: piecewise constant,
/// they pass no derivative of their own.
#[tokio::test]
async fn selections_and_ranks_are_piecewise_constant() {
    let ctx = context_with(4);
    problem(&ctx, 9).await;
    for loss in [
        "SELECT SUM(w * w) FROM w WHERE w.i IN (SELECT i FROM x WHERE v > 0)",
        "SELECT SUM(w * w) FROM w WHERE w.i NOT IN (SELECT i FROM x WHERE i > 1 AND v > 0)",
        "SELECT SUM(w * w) FROM w WHERE EXISTS (SELECT 1 FROM x WHERE v > 0)",
        "SELECT SUM(w * w) FROM w WHERE w.i IN (SELECT i FROM w WHERE w > 0)",
        "SELECT SUM(w.w) FROM w LEFT SEMI JOIN x ON w.i = x.i",
        "SELECT SUM(w.w * w.w) FROM w LEFT ANTI JOIN (SELECT i FROM x WHERE v > 1.5) x ON w.i = x.i",
        "SELECT SUM(w * r) FROM (SELECT w, ROW_NUMBER() OVER (ORDER BY i) AS r FROM w) t",
        "SELECT SUM(w * r) FROM (SELECT w, RANK() OVER (ORDER BY w) AS r FROM w) t",
        "SELECT SUM(w * r) FROM (SELECT w, DENSE_RANK() OVER (PARTITION BY i % 2 ORDER BY w DESC) AS r FROM w) t",
    ] {
        check_against_finite_differences(&ctx, loss, "w", "w", "i").await;
    }
}

/// Outer joins: every row of the preserved side, and the partner rows that
/// matched, get their columns' cotangents; padded rows pass nothing.
#[tokio::test]
async fn outer_joins() {
    let ctx = context_with(4);
    problem(&ctx, 6).await;
    for loss in [
        "SELECT SUM(coalesce(w.w, 1.0) * x.v) FROM x LEFT JOIN w ON x.i = w.i AND w.i < 2",
        "SELECT SUM(w.w * coalesce(x.v, 2.0)) FROM (SELECT * FROM x WHERE s = 0) x RIGHT JOIN w ON x.i = w.i",
        "SELECT SUM(coalesce(w.w, 0.5) + coalesce(x.v, 0.25)) FROM (SELECT * FROM x WHERE s = 1) x FULL JOIN w ON x.i = w.i",
    ] {
        check_against_finite_differences(&ctx, loss, "w", "w", "i").await;
    }
}

/// The documented shares, on data built to hit them: ties of `MIN`/`MAX`
/// share the cotangent, identical rows share what their copies received,
/// `COUNT` (also as a window) passes nothing. References: finite differences
/// of the loss with every tied row, or every copy, moved together.
#[tokio::test]
async fn ties_and_identical_rows_share() {
    let ctx = context_with(4);
    run(&ctx, "CREATE TABLE w (i BIGINT, w DOUBLE) AS VALUES (0, 1.0), (1, 1.0), (2, 0.5), (3, 0.25), (3, 0.25)").await;
    let value = |sql: String| {
        let ctx = ctx.clone();
        async move { crate::common::column(&ctx, &sql).await[0] }
    };
    // Moving the rows `moved` of w by `h`: the loss over that table.
    let moved = |loss: &str, moved: &str, h: f64| {
        format!("WITH w AS (SELECT i, CASE WHEN {moved} THEN w + ({h:?}) ELSE w END AS w FROM w) {loss}")
    };
    let h = 1e-6;
    let cases: [(&str, &str, f64); 4] = [
        // the tie at the maximum: rows 0 and 1 share, moved together
        ("SELECT MAX(w) FROM w", "i < 2", 2.0),
        ("SELECT MIN(w * w) + SUM(w) FROM w", "i = 3", 2.0),
        // identical rows (3, 0.25) twice: moved together, shared
        ("SELECT SUM(w * w * (i + 1)) FROM w", "i = 3", 2.0),
        // COUNT passes nothing, also over a window
        (
            "SELECT SUM(w * c) FROM (SELECT w, COUNT(w) OVER (PARTITION BY i % 2) AS c FROM w) t",
            "i = 3",
            2.0,
        ),
    ];
    for (loss, rows_moved, copies) in cases {
        let got = gradient_rows(&ctx, loss, "w", "w", "i").await;
        let difference = (value(moved(loss, rows_moved, h)).await
            - value(moved(loss, rows_moved, -h)).await)
            / (2.0 * h);
        let shares: Vec<f64> = got
            .iter()
            .zip([0, 1, 2, 3, 3])
            .filter(|(_, i)| match rows_moved {
                "i < 2" => *i < 2,
                _ => *i == 3,
            })
            .map(|((_, g), _)| *g)
            .collect();
        assert_eq!(shares.len() as f64, copies, "{loss}");
        for share in &shares {
            assert_close(
                *share,
                difference / copies,
                1e-6,
                &format!("{loss}: each share"),
            );
        }
    }
}

/// Planning a statement that reads a gradient, and `EXPLAIN`, compute
/// nothing: on a loss that takes a while to compute, both take a small
/// fraction of running it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_and_explain_compute_nothing() {
    use std::time::Instant;
    let ctx = context_with(2);
    let n = 1500;
    let i = datafusion::arrow::array::Int64Array::from_iter_values((0..n).map(|k| k % 16));
    let v = datafusion::arrow::array::Float64Array::from_iter_values(
        (0..n).map(|k| (k as f64 * 0.37).sin()),
    );
    let x = datafusion::arrow::array::RecordBatch::try_from_iter(vec![
        ("i", std::sync::Arc::new(i) as _),
        ("v", std::sync::Arc::new(v) as _),
    ])
    .unwrap();
    ctx.register_batch("x", x).unwrap();
    run(
        &ctx,
        "CREATE TABLE w AS SELECT DISTINCT i, CAST(i AS DOUBLE) / 16.0 AS w FROM x",
    )
    .await;
    let loss = "SELECT SUM(a.v * b.v * w.w * w.w) FROM x a CROSS JOIN x b JOIN w ON a.i = w.i";
    let query = format!("SELECT i, grad FROM gradient('{loss}', 'w.w')");

    let start = Instant::now();
    let df = ctx.sql(&query).await.unwrap();
    let _ = df.schema();
    let _ = df.logical_plan();
    let planned = start.elapsed();

    let start = Instant::now();
    let explain = ctx.sql(&format!("EXPLAIN {query}")).await.unwrap();
    explain.collect().await.unwrap();
    let explained = start.elapsed();

    let start = Instant::now();
    let got = rows(&ctx, &query).await;
    let ran = start.elapsed();
    assert_eq!(got.len(), 16);
    assert!(
        planned * 10 < ran && explained * 10 < ran,
        "planning took {planned:?} and EXPLAIN {explained:?}, running {ran:?}: planning computes"
    );
}
