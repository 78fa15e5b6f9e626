//! Random loss queries against finite differences: `gradient()` of queries
//! drawn over joins (inner, outer, cross, semi), `GROUP BY`, windows,
//! `UNION ALL`, CTEs, views, scalar and `IN` subqueries and `VALUES`, over
//! tables with NULLs, tied keys and duplicate rows, each row's gradient
//! checked against central differences of the loss re-run in a plain
//! `SessionContext`, the same at 1 and 8 partitions, and the same again from
//! the SQL text `gradient_sql` writes.
//!
//! `AUTOGRAD_FUZZ_LOSSES` sets how many queries (default 200; `dev.sh fuzz`
//! runs thousands), `AUTOGRAD_FUZZ_SEED` the first seed.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::config::SessionConfig;
use datafusion::prelude::SessionContext;
use datafusion_autograd::{gradient_sql, Relation};

use crate::common::{rows, Rng};

/// Parameter rows `(i, w)`; data rows `x(s, i, v)` and `y(s, t)`.
struct Data {
    w: Vec<(i64, Option<f64>)>,
    x: Vec<(i64, i64, Option<f64>)>,
    y: Vec<(i64, Option<f64>)>,
}

impl Data {
    fn draw(rng: &mut Rng) -> Self {
        let value = |rng: &mut Rng, null_odds: usize| {
            (rng.below(null_odds) != 0)
                .then(|| (rng.uniform(-1.5, 1.5) * 64.0).round() / 64.0 + rng.uniform(-0.01, 0.01))
        };
        let mut w: Vec<(i64, Option<f64>)> = (0..4).map(|i| (i, value(rng, 12))).collect();
        // Tied keys, and sometimes a whole row twice.
        if rng.below(2) == 0 {
            w[3].0 = w[2].0;
        }
        if rng.below(3) == 0 {
            w.push(w[1]);
        }
        let mut x = vec![];
        for s in 0..3 {
            for _ in 0..3 {
                x.push((s, rng.below(4) as i64, value(rng, 6)));
            }
        }
        if rng.below(2) == 0 {
            x.push(x[0]);
        }
        let y = (0..4).map(|s| ((s % 3) as i64, value(rng, 6))).collect();
        Data { w, x, y }
    }

    /// The parameter table with row `rows` moved by `step`.
    fn w_batch(&self, rows: &[usize], step: f64) -> RecordBatch {
        let i = Int64Array::from_iter_values(self.w.iter().map(|(i, _)| *i));
        let w = Float64Array::from_iter(
            self.w
                .iter()
                .enumerate()
                .map(|(r, (_, w))| w.map(|w| if rows.contains(&r) { w + step } else { w })),
        );
        batch(
            &[("i", DataType::Int64), ("w", DataType::Float64)],
            vec![Arc::new(i), Arc::new(w)],
        )
    }

    fn register(&self, ctx: &SessionContext, step: Option<(&[usize], f64)>) {
        let (rows, by) = step.unwrap_or((&[], 0.0));
        for name in ["w", "x", "y"] {
            let _ = ctx.deregister_table(name);
        }
        ctx.register_batch("w", self.w_batch(rows, by)).unwrap();
        let x = batch(
            &[
                ("s", DataType::Int64),
                ("i", DataType::Int64),
                ("v", DataType::Float64),
            ],
            vec![
                Arc::new(Int64Array::from_iter_values(self.x.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(self.x.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter(self.x.iter().map(|r| r.2))),
            ],
        );
        ctx.register_batch("x", x).unwrap();
        let y = batch(
            &[("s", DataType::Int64), ("t", DataType::Float64)],
            vec![
                Arc::new(Int64Array::from_iter_values(self.y.iter().map(|r| r.0))),
                Arc::new(Float64Array::from_iter(self.y.iter().map(|r| r.1))),
            ],
        );
        ctx.register_batch("y", y).unwrap();
    }
}

fn batch(fields: &[(&str, DataType)], columns: Vec<Arc<dyn Array>>) -> RecordBatch {
    let schema = Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

/// What a drawn query went through, to check that the generator reaches
/// every operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Projection,
    Filter,
    InSubquery,
    InnerJoin,
    LeftJoin,
    CrossJoin,
    SemiJoin,
    GroupBy,
    /// `GROUP BY` a value that may be the parameter's column.
    GroupByValue,
    Window,
    Rank,
    UnionAll,
    Cte,
    View,
    ScalarSubquery,
    Values,
}

const OPS: [Op; 16] = [
    Op::Projection,
    Op::Filter,
    Op::InSubquery,
    Op::InnerJoin,
    Op::LeftJoin,
    Op::CrossJoin,
    Op::SemiJoin,
    Op::GroupBy,
    Op::GroupByValue,
    Op::Window,
    Op::Rank,
    Op::UnionAll,
    Op::Cte,
    Op::View,
    Op::ScalarSubquery,
    Op::Values,
];

/// Draws loss queries; every relation it writes has the columns `k BIGINT,
/// a DOUBLE, b DOUBLE`.
struct Generator<'a> {
    rng: &'a mut Rng,
    aliases: usize,
    views: Vec<(String, String)>,
    used: Vec<Op>,
    /// Whether the loss reads the parameter's table anywhere.
    reads_w: bool,
}

impl Generator<'_> {
    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.rng.below(options.len())]
    }

    fn base(&mut self) -> String {
        let choice = self.rng.below(5);
        self.reads_w |= choice < 3;
        match choice {
            0 | 1 => "SELECT i AS k, w AS a, w * 0.5 + 1.0 AS b FROM w".into(),
            2 => {
                "SELECT x.s AS k, x.v * w.w AS a, w.w - x.v AS b FROM x JOIN w ON x.i = w.i".into()
            }
            3 => "SELECT s AS k, t AS a, t * t AS b FROM y".into(),
            _ => {
                self.used.push(Op::Values);
                "SELECT column1 AS k, column2 AS a, column3 AS b \
                 FROM (VALUES (0, 1.5, NULL), (1, -0.5, 2.0), (1, 0.25, 0.5)) AS t"
                    .into()
            }
        }
    }

    /// A smooth-enough expression over `a` and `b` of the relation `q`.
    fn expr(&mut self, q: &str) -> String {
        let (a, b) = (format!("{q}.a"), format!("{q}.b"));
        match self.rng.below(9) {
            0 => format!("{a} * {b}"),
            1 => format!("{a} + 0.5 * {b}"),
            2 => format!("sin({a}) + {b}"),
            3 => format!("exp({a} / 4.0) * 0.5"),
            4 => format!("{a} * {a} - {b}"),
            5 => format!("coalesce({a}, 0.3) * 2.0"),
            6 => format!("CASE WHEN {b} IS NULL THEN {a} ELSE {a} * {b} END"),
            7 => format!("tanh({b}) - {a}"),
            _ => a.to_string(),
        }
    }

    fn relation(&mut self, depth: usize) -> String {
        if depth == 0 {
            return self.base();
        }
        let q = self.alias("q");
        match self.rng.below(11) {
            0 => {
                self.used.push(Op::Projection);
                let inner = self.relation(depth - 1);
                let (ea, eb) = (self.expr(&q), self.expr(&q));
                format!("SELECT {q}.k, {ea} AS a, {eb} AS b FROM ({inner}) {q}")
            }
            1 => {
                let inner = self.relation(depth - 1);
                let predicate = match self.rng.below(4) {
                    0 => format!("{q}.a > -0.5"),
                    1 => format!("{q}.b IS NULL OR {q}.b < 1.0"),
                    2 => format!("{q}.k % 2 = 0"),
                    _ => {
                        self.used.push(Op::InSubquery);
                        self.reads_w = true;
                        format!("{q}.k IN (SELECT i FROM w WHERE w > 0)")
                    }
                };
                self.used.push(Op::Filter);
                format!("SELECT * FROM ({inner}) {q} WHERE {predicate}")
            }
            2 | 3 => {
                let (l, r) = (self.relation(depth - 1), self.relation(depth - 1));
                let (lq, rq) = (self.alias("l"), self.alias("r"));
                match self.rng.below(4) {
                    0 => {
                        self.used.push(Op::InnerJoin);
                        format!(
                            "SELECT {lq}.k, {lq}.a * {rq}.b AS a, {lq}.b + {rq}.a AS b \
                             FROM ({l}) {lq} JOIN ({r}) {rq} ON {lq}.k = {rq}.k"
                        )
                    }
                    1 => {
                        self.used.push(Op::LeftJoin);
                        format!(
                            "SELECT {lq}.k, {lq}.a * coalesce({rq}.b, 1.0) AS a, {rq}.a AS b \
                             FROM ({l}) {lq} LEFT JOIN ({r}) {rq} ON {lq}.k = {rq}.k"
                        )
                    }
                    2 => {
                        self.used.push(Op::CrossJoin);
                        format!(
                            "SELECT {lq}.k, {lq}.a - {rq}.a AS a, {lq}.b * {rq}.b AS b \
                             FROM ({l}) {lq} CROSS JOIN ({r}) {rq}"
                        )
                    }
                    _ => {
                        self.used.push(Op::SemiJoin);
                        format!(
                            "SELECT {lq}.k, {lq}.a, {lq}.b FROM ({l}) {lq} \
                             LEFT SEMI JOIN ({r}) {rq} ON {lq}.k = {rq}.k"
                        )
                    }
                }
            }
            4 | 5 => {
                self.used.push(Op::GroupBy);
                let inner = self.relation(depth - 1);
                let fa = self.pick(&["SUM", "AVG", "MIN", "MAX"]);
                let b = match self.rng.below(5) {
                    0 => format!("CAST(COUNT({q}.b) AS DOUBLE)"),
                    _ => format!("{}({q}.b)", self.pick(&["SUM", "AVG", "MIN", "MAX"])),
                };
                if self.rng.below(3) == 0 {
                    self.used.push(Op::GroupByValue);
                    format!(
                        "SELECT {q}.k, {q}.a, {b} AS b FROM ({inner}) {q} GROUP BY {q}.k, {q}.a"
                    )
                } else {
                    format!(
                        "SELECT {q}.k, {fa}({q}.a) AS a, {b} AS b FROM ({inner}) {q} GROUP BY {q}.k"
                    )
                }
            }
            6 => {
                self.used.push(Op::Window);
                let inner = self.relation(depth - 1);
                let fa = self.pick(&["SUM", "AVG", "MIN", "MAX"]);
                let b = if self.rng.below(3) == 0 {
                    self.used.push(Op::Rank);
                    format!(
                        "CAST(RANK() OVER (PARTITION BY {q}.k ORDER BY {q}.a) AS DOUBLE) * {q}.b"
                    )
                } else {
                    let fb = self.pick(&["SUM", "AVG", "MAX", "COUNT"]);
                    format!("CAST({fb}({q}.b) OVER () AS DOUBLE)")
                };
                format!(
                    "SELECT {q}.k, {q}.a - {fa}({q}.a) OVER (PARTITION BY {q}.k) AS a, {b} AS b \
                     FROM ({inner}) {q}"
                )
            }
            7 => {
                self.used.push(Op::UnionAll);
                let (l, r) = (self.relation(depth - 1), self.relation(depth - 1));
                let (u1, u2) = (self.alias("u"), self.alias("u"));
                format!(
                    "SELECT {u1}.k, {u1}.a, {u1}.b FROM ({l}) {u1} \
                     UNION ALL SELECT {u2}.k, {u2}.a, {u2}.b FROM ({r}) {u2}"
                )
            }
            8 => {
                self.used.push(Op::Cte);
                let inner = self.relation(depth - 1);
                let c = self.alias("c");
                if self.rng.below(2) == 0 {
                    format!("WITH {c} AS ({inner}) SELECT k, a, b FROM {c}")
                } else {
                    format!(
                        "WITH {c} AS ({inner}) SELECT c1.k, c1.a * c2.b AS a, c1.b AS b \
                         FROM {c} c1 JOIN {c} c2 ON c1.k = c2.k"
                    )
                }
            }
            9 => {
                self.used.push(Op::View);
                let inner = self.relation(depth - 1);
                let v = self.alias("v");
                self.views.push((v.clone(), inner));
                format!("SELECT k, a, b FROM {v}")
            }
            _ => {
                self.used.push(Op::ScalarSubquery);
                let inner = self.relation(depth - 1);
                let scalar = if self.rng.below(2) == 0 {
                    self.reads_w = true;
                    "(SELECT AVG(w) FROM w)".to_string()
                } else {
                    let other = self.relation(depth - 1);
                    let s = self.alias("s");
                    format!("(SELECT SUM({s}.a) FROM ({other}) {s})")
                };
                format!("SELECT {q}.k, {q}.a * {scalar} AS a, {q}.b FROM ({inner}) {q}")
            }
        }
    }

    fn loss(&mut self) -> String {
        let depth = 1 + self.rng.below(3);
        let inner = self.relation(depth);
        let q = self.alias("q");
        let e = match self.rng.below(4) {
            0 => format!("{q}.a"),
            1 => format!("{q}.a * {q}.b"),
            2 => format!("{q}.a + {q}.b"),
            _ => format!("coalesce({q}.a, 0.0) * 0.5 + {q}.b"),
        };
        let f = self.pick(&["SUM", "SUM", "AVG", "MAX"]);
        format!("SELECT {f}({e}) FROM ({inner}) {q}")
    }
}

fn context(partitions: usize, autograd: bool) -> SessionContext {
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    if autograd {
        datafusion_autograd::register(&ctx);
    }
    ctx
}

async fn create_views(ctx: &SessionContext, views: &[(String, String)]) {
    for (name, sql) in views {
        ctx.sql(&format!("CREATE OR REPLACE VIEW {name} AS {sql}"))
            .await
            .unwrap();
    }
}

/// `(i, w) → grad` for every row of `w`, in row order.
async fn gradient_rows(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<(i64, Option<f64>, Option<f64>)>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    let mut out = vec![];
    for batch in batches {
        let i = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let w = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let g = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for r in 0..batch.num_rows() {
            let get = |a: &Float64Array| (!a.is_null(r)).then(|| a.value(r));
            out.push((i.value(r), get(w), get(g)));
        }
    }
    out.sort_by(|a, b| (a.0, a.1.map(f64::to_bits)).cmp(&(b.0, b.1.map(f64::to_bits))));
    Ok(out)
}

async fn loss_value(ctx: &SessionContext, loss: &str) -> Option<f64> {
    rows(ctx, loss).await[0][0]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs())) || (a.is_nan() && b.is_nan())
}

/// Checks one drawn loss; returns how many parameter rows were checked
/// against finite differences (rows at kinks and jumps are not differentiable
/// and are left out), or a description of the failure.
async fn check(seed: u64) -> Result<(usize, Vec<Op>), String> {
    let mut rng = Rng::new(seed);
    let data = Data::draw(&mut rng);
    let mut generator = Generator {
        rng: &mut rng,
        aliases: 0,
        views: vec![],
        used: vec![],
        reads_w: false,
    };
    let loss = generator.loss();
    let reads_w = generator.reads_w;
    let views = generator.views.clone();
    let used = generator.used.clone();
    let fail = |what: String| format!("seed {seed}: {what}\n  loss: {loss}\n  views: {views:?}");

    let query = format!(
        "SELECT i, w, grad FROM gradient('{}', 'w.w')",
        loss.replace('\'', "''")
    );
    let mut results = vec![];
    for partitions in [1, 8] {
        let ctx = context(partitions, true);
        data.register(&ctx, None);
        create_views(&ctx, &views).await;
        results.push(
            gradient_rows(&ctx, &query)
                .await
                .map_err(|e| fail(format!("gradient() at {partitions} partitions: {e}")))?,
        );
    }
    let got = results[0].clone();

    // The reference: a plain context.
    let plain = context(4, false);
    data.register(&plain, None);
    create_views(&plain, &views).await;

    // Central differences: each group of identical rows moved together,
    // its derivative shared among the copies.
    let value = loss_value(&plain, &loss).await;
    let mut groups: BTreeMap<(i64, Option<u64>), Vec<usize>> = BTreeMap::new();
    for (r, (i, w)) in data.w.iter().enumerate() {
        groups.entry((*i, w.map(f64::to_bits))).or_default().push(r);
    }
    let h = 1e-6;
    let mut checked = 0;
    // The rows whose gradient is decided (not at a kink or a jump, where a
    // host that computes a relation once per reading may break a tie
    // otherwise), by their place in the sorted result.
    let mut decided = vec![];
    for ((i, w), members) in &groups {
        let expected_rows: Vec<_> = got
            .iter()
            .filter(|(gi, gw, _)| gi == i && gw.map(f64::to_bits) == *w)
            .collect();
        if expected_rows.len() != members.len() {
            return Err(fail(format!(
                "the gradient has {} rows for ({i}, {w:?}), the table {}",
                expected_rows.len(),
                members.len()
            )));
        }
        let grad = expected_rows[0].2;
        let places: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, (gi, gw, _))| gi == i && gw.map(f64::to_bits) == *w)
            .map(|(k, _)| k)
            .collect();
        // A loss that does not read the parameter's table is a constant.
        if !reads_w {
            if grad != Some(0.0) {
                return Err(fail(format!(
                    "the loss does not read w, the gradient at ({i}, {w:?}) is {grad:?}"
                )));
            }
            decided.extend(places);
            continue;
        }
        if value.is_none() {
            if grad.is_some() {
                return Err(fail(format!(
                    "the loss is NULL, the gradient at ({i}, {w:?}) is {grad:?}"
                )));
            }
            decided.extend(places);
            continue;
        }
        let at = |step: f64| {
            data.register(&plain, Some((members, step)));
            let plain = plain.clone();
            let loss = loss.clone();
            let views = views.clone();
            async move {
                // A view holds the tables it was created over: created again.
                create_views(&plain, &views).await;
                loss_value(&plain, &loss).await
            }
        };
        let (up, down) = (at(h).await, at(-h).await);
        data.register(&plain, None);
        create_views(&plain, &views).await;
        let (Some(up), Some(down), Some(centre)) = (up, down, value) else {
            continue;
        };
        let (forward, backward) = ((up - centre) / h, (centre - down) / h);
        if !close(forward, backward, 1e-3) {
            continue; // a kink or a jump: not differentiable here
        }
        let difference = (up - down) / (2.0 * h) / members.len() as f64;
        let Some(grad) = grad else {
            return Err(fail(format!(
                "the gradient at ({i}, {w:?}) is NULL, differences give {difference}"
            )));
        };
        if !close(grad, difference, 1e-5) && (grad - difference).abs() > 1e-6 {
            return Err(fail(format!(
                "∂loss/∂w at ({i}, {w:?}): got {grad}, differences give {difference}"
            )));
        }
        checked += 1;
        decided.extend(places);
    }

    // The same at 8 partitions.
    let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => close(a, b, 1e-9),
        (a, b) => a.is_none() && b.is_none(),
    };
    for &k in &decided {
        let (one, eight) = (&got[k], &results[1][k]);
        if !same(one.2, eight.2) {
            return Err(fail(format!(
                "1 and 8 partitions differ: {one:?} vs {eight:?}"
            )));
        }
    }
    // The same gradient from the SQL text, run by a plain context.
    let catalog = |table: &datafusion_common::TableReference| {
        let name = table.table().to_string();
        if let Some((_, sql)) = views.iter().find(|(v, _)| *v == name) {
            return Ok(Some(Relation::View(sql.clone())));
        }
        let df = futures::executor::block_on(plain.table(name.as_str())).ok();
        Ok(df.map(|df| Relation::Table(Arc::new(df.schema().as_arrow().clone()))))
    };
    let text = gradient_sql(&loss, "w.w", &catalog, &Default::default())
        .map_err(|e| fail(format!("gradient_sql: {e}")))?;
    let from_text = gradient_rows(&plain, &format!("SELECT i, w, grad FROM ({text})"))
        .await
        .map_err(|e| fail(format!("the SQL text does not run: {e}\n  text: {text}")))?;
    if from_text.len() != got.len() {
        return Err(fail(format!(
            "the SQL text gives {} rows, the table function {}",
            from_text.len(),
            got.len()
        )));
    }
    for &k in &decided {
        let (native, written) = (&got[k], &from_text[k]);
        if !same(native.2, written.2) {
            return Err(fail(format!(
                "the SQL text gives {written:?}, the table function {native:?}\n  text: {text}"
            )));
        }
    }

    Ok((checked, used))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_losses_match_finite_differences() {
    let count: u64 = std::env::var("AUTOGRAD_FUZZ_LOSSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("AUTOGRAD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut failures = vec![];
    let mut checked = 0;
    let mut seen = std::collections::BTreeSet::new();
    for seed in first..first + count {
        match check(seed).await {
            Ok((n, used)) => {
                checked += n;
                seen.extend(used);
            }
            Err(e) => failures.push(e),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, the first:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let missing: Vec<_> = OPS.iter().filter(|op| !seen.contains(op)).collect();
    assert!(missing.is_empty(), "the generator never drew {missing:?}");
    // Most rows are differentiable points: a check that skipped them all would check nothing.
    assert!(
        checked as u64 >= count,
        "only {checked} rows checked in {count} losses"
    );
}
