//! Bad input is a planning error that names the problem, never a value.

use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::Optimizer;
use datafusion::prelude::SessionContext;

use crate::common::{context, error, register, rows};

fn with_points() -> SessionContext {
    let ctx = context();
    register(
        &ctx,
        "pts",
        &[
            ("x", vec![Some(1.0), Some(2.0)]),
            ("y", vec![Some(3.0), Some(4.0)]),
        ],
    );
    ctx
}

#[tokio::test]
async fn unsupported_function_is_named() {
    let ctx = with_points();
    let e = error(&ctx, "SELECT grad(nanvl(x, 0.0) * y, x) FROM pts").await;
    assert!(e.contains("no derivative rule for 'nanvl'"), "{e}");
    let e = error(
        &ctx,
        "SELECT grad(x | 1, x) FROM (SELECT CAST(x AS BIGINT) AS x FROM pts)",
    )
    .await;
    assert!(e.contains("no derivative rule for '|'"), "{e}");
}

#[tokio::test]
async fn a_function_of_other_columns_needs_no_rule() {
    let ctx = with_points();
    let batches = ctx
        .sql("SELECT grad(x * nanvl(y, 0.0), x) AS d FROM pts")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
}

#[tokio::test]
async fn wrt_must_be_a_column() {
    let ctx = with_points();
    for sql in [
        "SELECT grad(x * x, x + 1) FROM pts",
        "SELECT grad(x * x, 2.0) FROM pts",
    ] {
        let e = error(&ctx, sql).await;
        assert!(
            e.contains(
                "the second argument of grad(expression, column) must be a column reference"
            ),
            "{e}"
        );
    }
    let e = error(&ctx, "SELECT jvp(x * x, abs(x), 1.0) FROM pts").await;
    assert!(
        e.contains("jvp(expression, column, tangent) must be a column reference, found `abs("),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_arity() {
    let ctx = with_points();
    let e = error(&ctx, "SELECT grad(x) FROM pts").await;
    assert!(
        e.contains("grad(expression, column) takes 2 arguments, got 1"),
        "{e}"
    );
    let e = error(&ctx, "SELECT vjp(x * x, x) FROM pts").await;
    assert!(
        e.contains("vjp(expression, column, cotangent) takes 3 arguments, got 2"),
        "{e}"
    );
    let e = error(&ctx, "SELECT jvp(x, x, 1, 2) FROM pts").await;
    assert!(
        e.contains("jvp(expression, column, tangent) takes 3 arguments, got 4"),
        "{e}"
    );
}

#[tokio::test]
async fn non_numeric_arguments() {
    let ctx = with_points();
    let e = error(&ctx, "SELECT grad(x, s) FROM (SELECT x, 'a' AS s FROM pts)").await;
    assert!(
        e.contains("argument 2 of grad(expression, column) must be numeric, found Utf8"),
        "{e}"
    );
}

#[tokio::test]
async fn through_a_correlated_scalar_subquery() {
    let ctx = with_points();
    let e = error(
        &ctx,
        "SELECT grad((SELECT MAX(q.y * p.x) FROM pts q), p.x) FROM pts p",
    )
    .await;
    assert!(
        e.contains("scalar subquery that refers to the column being differentiated"),
        "{e}"
    );
}

/// A host that skips the simplify pass gets an explanation, never a value.
#[tokio::test]
async fn a_marker_reaching_execution_explains_itself() {
    let rules = Optimizer::new()
        .rules
        .into_iter()
        .filter(|r| r.name() != "simplify_expressions")
        .collect::<Vec<_>>();
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    datafusion_autograd::register(&ctx);
    let e = error(&ctx, "SELECT grad(x * x, x) FROM (VALUES (1.0)) AS t(x)").await;
    assert!(
        e.contains("grad() reached execution: the host did not call the function's simplify hook"),
        "{e}"
    );
}

/// The tenth derivative of tan(exp(x)) grows past any sensible size: forming
/// it stops at the limit, with an error that names the size and the limit.
#[tokio::test]
async fn derivatives_past_the_size_limit_are_an_error() {
    let ctx = with_points();
    let mut f = "tan(exp(x))".to_string();
    for _ in 0..10 {
        f = format!("grad({f}, x)");
    }
    let e = error(&ctx, &format!("SELECT {f} FROM pts")).await;
    assert!(
        e.contains("expression nodes, past the limit of 100000 (autograd.max_derivative_nodes)"),
        "{e}"
    );

    // The limit is a session option.
    rows(&ctx, "SET autograd.max_derivative_nodes = 6").await;
    let e = error(&ctx, "SELECT grad(x * x * x * y, x) FROM pts").await;
    assert!(
        e.contains("past the limit of 6 (autograd.max_derivative_nodes)"),
        "{e}"
    );
    rows(&ctx, "SET autograd.max_derivative_nodes = 1000").await;
    let got =
        crate::common::column(&ctx, "SELECT grad(x * x * x * y, x) FROM pts ORDER BY id").await;
    assert_eq!(got, vec![3.0 * 1.0 * 3.0, 3.0 * 4.0 * 4.0]);
}

/// Expressions nested thousands deep do not exhaust the stack: in the
/// planner (a DataFrame projection, aliased — DataFusion names an unaliased
/// column after its expression, recursively, and that alone exhausts a test
/// thread's stack at this depth) and in the engine, where the derivative of
/// the deepest is refused by its size.
#[tokio::test]
async fn deep_expressions_do_not_exhaust_the_stack() {
    use datafusion::prelude::col;
    use datafusion_autograd::expr_fn::grad;
    use datafusion_common::Column;
    use datafusion_functions::math::expr_fn::sin;

    let nested = |depth: usize| (0..depth).fold(col("x"), |f, _| sin(f));
    let ctx = with_points();
    let df = ctx
        .table("pts")
        .await
        .unwrap()
        .select(vec![grad(nested(150), col("x")).alias("d")])
        .unwrap();
    let (mut x, mut d) = (1.0_f64, 1.0_f64);
    for _ in 0..150 {
        d *= x.cos();
        x = x.sin();
    }
    let got = df.collect().await.unwrap();
    let got = got[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Float64Array>()
        .unwrap()
        .value(0);
    assert!((got - d).abs() <= 1e-12 * d.abs(), "{got} vs {d}");

    // Deep enough to need room of its own to be built and dropped at all.
    stacker::grow(256 * 1024 * 1024, || {
        let x = Column::from_name("x");
        let e = datafusion_autograd::differentiate(&nested(5_000), &x)
            .unwrap_err()
            .to_string();
        assert!(e.contains("past the limit of 100000"), "{e}");
        let e = datafusion_autograd::differentiate(&nested(20_000), &x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "nests 20001 levels deep, past the limit of 10000 (autograd.max_expression_depth)"
            ),
            "{e}"
        );
    });
}
