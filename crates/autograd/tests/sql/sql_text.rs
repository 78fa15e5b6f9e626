//! `differentiate_sql`: derivative SQL that evaluates to the right numbers.

use datafusion_autograd::{differentiate_sql, rewrite_sql, Dialect};

use crate::common::{assert_close, column, context, register, rows};

/// `(f, wrt, ∂f/∂wrt)` with the derivative written in Rust.
type Case = (&'static str, &'static str, fn(f64, f64) -> f64);

#[tokio::test]
async fn derivative_sql_evaluates_to_the_derivative() {
    let ctx = context();
    let xs = [0.3, 1.1, 2.5];
    let ys = [1.5, -0.5, 2.0];
    register(
        &ctx,
        "pts",
        &[
            ("x", xs.iter().map(|&v| Some(v)).collect()),
            ("y", ys.iter().map(|&v| Some(v)).collect()),
        ],
    );
    let cases: [Case; 7] = [
        ("x * x * y", "x", |x, y| 2.0 * x * y),
        ("sin(x) / (1 + y * y)", "y", |x, y| {
            -2.0 * y * x.sin() / (1.0 + y * y).powi(2)
        }),
        ("power(x, y)", "y", |x, y| x.powf(y) * x.ln()),
        ("CASE WHEN x > 1 THEN exp(x) ELSE -x END", "x", |x, _| {
            if x > 1.0 {
                x.exp()
            } else {
                -1.0
            }
        }),
        ("grad(x * x * x, x)", "x", |x, _| 6.0 * x),
        (
            "greatest(x, y) * 2",
            "x",
            |x, y| if x >= y { 2.0 } else { 0.0 },
        ),
        ("atan2(y, X)", "x", |x, y| -y / (x * x + y * y)),
    ];
    for (f, wrt, d) in cases {
        let sql = differentiate_sql(f, wrt, Dialect::DataFusion).unwrap();
        assert!(!sql.contains("grad"), "{sql}");
        let got = column(&ctx, &format!("SELECT {sql} FROM pts ORDER BY id")).await;
        for i in 0..xs.len() {
            assert_close(
                got[i],
                d(xs[i], ys[i]),
                1e-12,
                &format!("d/d{wrt} {f} = {sql}"),
            );
        }
    }
}

#[test]
fn output_is_small_and_readable() {
    assert_eq!(
        differentiate_sql("x * x + 3 * y", "x", Dialect::DataFusion).unwrap(),
        "x * 2.0"
    );
    assert_eq!(
        differentiate_sql("y", "x", Dialect::DataFusion).unwrap(),
        "0.0"
    );
    assert_eq!(
        differentiate_sql("t.x * s.x", "s.x", Dialect::DataFusion).unwrap(),
        "t.x"
    );
    assert_eq!(
        differentiate_sql(r#""Speed" * 2"#, r#""Speed""#, Dialect::DataFusion).unwrap(),
        "2.0"
    );
}

#[test]
fn sql_errors_name_the_problem() {
    let e = differentiate_sql("x +", "x", Dialect::DataFusion)
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid SQL expression `x +`"), "{e}");
    let e = differentiate_sql("x x", "x", Dialect::DataFusion)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected `x` after the expression"), "{e}");
    let e = differentiate_sql("x * 2", "x + 1", Dialect::DataFusion)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be a column name"), "{e}");
    let e = differentiate_sql("nanvl(x, 1)", "x", Dialect::DataFusion)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no derivative rule for 'nanvl'"), "{e}");
    let e = differentiate_sql("no_such_fn(x)", "x", Dialect::DataFusion)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no_such_fn"), "{e}");
}

#[tokio::test]
async fn rewritten_sql_runs_on_a_context_without_the_markers() {
    let ctx = datafusion::prelude::SessionContext::new();
    rows(
        &ctx,
        "CREATE TABLE t AS SELECT * FROM (VALUES (0, 1.5, 3, 'a'), (1, 2.0, 5, 'b')) AS v(id, x, i, label)",
    )
    .await;
    let sql = "SELECT grad(CASE label WHEN 'a' THEN x * x ELSE i / 2 END, x) \
                      + grad(CASE WHEN label = 'a' THEN i / 2 END, i) AS d \
               FROM t ORDER BY id -- grad(y, y)";
    let rewritten = rewrite_sql(sql, &|_| Ok(None), &Default::default()).unwrap();
    assert!(
        rewritten.ends_with(" AS d FROM t ORDER BY id -- grad(y, y)"),
        "{rewritten}"
    );
    let got = rows(&ctx, &rewritten).await;
    // Row a: ∂(x²)/∂x + ∂(i/2)/∂i over the reals; row b: the CASE yields NULL.
    assert_eq!(got, vec![vec![Some(2.0 * 1.5 + 0.5)], vec![None]]);
}

/// Signs and non-finite constants print so that the text reads back as the
/// expression: `--` would start a comment, `inf` would read as a column.
#[tokio::test]
async fn signs_and_non_finite_constants_read_back() {
    let ctx = context();
    let xs = [0.3, -1.1, 2.5];
    let ys = [1.5, -0.5, 0.2];
    register(
        &ctx,
        "pts",
        &[
            ("x", xs.iter().map(|&v| Some(v)).collect()),
            ("y", ys.iter().map(|&v| Some(v)).collect()),
        ],
    );
    let cases: [Case; 5] = [
        ("-(-y) * x", "x", |_, y| y),
        ("exp(-(-x))", "x", |x, _| x.exp()),
        ("-(-(-x)) * y", "x", |_, y| -y),
        (
            "CASE WHEN -(-0.384) > abs(y) THEN x * x ELSE -x END",
            "x",
            |x, y| if 0.384 > y.abs() { 2.0 * x } else { -1.0 },
        ),
        ("x * 1e200 * 1e200", "x", |_, _| f64::INFINITY),
    ];
    for (f, wrt, d) in cases {
        let derivative = differentiate_sql(f, wrt, Dialect::DataFusion).unwrap();
        assert!(!derivative.contains("--"), "{derivative}");
        let marker = format!("SELECT grad({f}, {wrt}) FROM pts ORDER BY id");
        for sql in [
            format!("SELECT {derivative} FROM pts ORDER BY id"),
            rewrite_sql(&marker, &|_| Ok(None), &Default::default()).unwrap(),
        ] {
            let got = column(&ctx, &sql).await;
            for i in 0..xs.len() {
                let want = d(xs[i], ys[i]);
                if want.is_finite() {
                    assert_close(got[i], want, 1e-12, &format!("d/d{wrt} {f} = {sql}"));
                } else {
                    assert_eq!(got[i], want, "d/d{wrt} {f} = {sql}");
                }
            }
        }
    }
}
