//! Each rule of the tangent algebra, checked by the expression it writes and
//! by its values at points against the expression written without it.

use datafusion_expr::{col, lit, Expr, Operator};
use datafusion_functions::math::expr_fn::{cos, exp, ln, sin, tanh};

use super::*;
use crate::forward::marker::{differentiate, linearize};
use datafusion_common::Column;

const POINTS: [(f64, f64); 5] = [
    (0.3, -1.2),
    (-1.7, 0.4),
    (2.1, 2.5),
    (-0.05, -0.8),
    (1.0, 0.0),
];

/// `e` at `x`, `y`: the arithmetic and the functions these tests use.
fn eval(e: &Expr, x: f64, y: f64) -> f64 {
    match e {
        Expr::Column(c) if c.name == "x" => x,
        Expr::Column(c) if c.name == "y" => y,
        Expr::Literal(..) => as_number(e).unwrap(),
        Expr::Negative(u) => -eval(u, x, y),
        Expr::BinaryExpr(b) => {
            let (l, r) = (eval(&b.left, x, y), eval(&b.right, x, y));
            match b.op {
                Operator::Plus => l + r,
                Operator::Minus => l - r,
                Operator::Multiply => l * r,
                Operator::Divide => l / r,
                op => panic!("no {op} here"),
            }
        }
        Expr::ScalarFunction(f) => {
            let u = eval(&f.args[0], x, y);
            match f.func.name() {
                "sin" => u.sin(),
                "cos" => u.cos(),
                "tanh" => u.tanh(),
                "exp" => u.exp(),
                "ln" => u.ln(),
                other => panic!("no {other} here"),
            }
        }
        other => panic!("cannot evaluate {other}"),
    }
}

/// `got` and `want` agree at every point to within 1e-12 relative.
fn same_values(got: &Expr, want: &Expr) {
    for (x, y) in POINTS {
        let (g, w) = (eval(got, x, y), eval(want, x, y));
        assert!(
            g == w
                || g.is_nan() && w.is_nan()
                || (g - w).abs() <= 1e-12 * w.abs().max(f64::MIN_POSITIVE),
            "{got} = {g} but {want} = {w} at x = {x}, y = {y}"
        );
    }
}

/// The tangent written out, checked against `unsimplified` and compared with
/// `expected` as text.
fn check(tangent: Tangent, unsimplified: Expr, expected: Expr) {
    let got = tangent.into_expr();
    same_values(&got, &unsimplified);
    assert_eq!(got, expected, "written as {got}");
}

fn x() -> Tangent {
    Tangent::new(col("x"))
}

#[test]
fn zero_and_one_fold_away() {
    assert_eq!(x().times(lit(1.0)), x());
    assert!(x().times(lit(0.0)).is_zero());
    assert_eq!(
        Tangent::new(lit(1.0)).times(col("c")),
        Tangent::new(col("c"))
    );
    assert_eq!(Tangent::Zero.plus(&x()), x());
    assert_eq!(x().minus(&Tangent::Zero), x());
    assert_eq!(Tangent::Zero.minus(&x()), Tangent::new(-col("x")));
    assert_eq!(x().neg().neg(), x());
    assert_eq!(
        Tangent::new(lit(2.0)).times(lit(3.0)),
        Tangent::new(lit(6.0))
    );
    assert!(Tangent::new(lit(0.0)).is_zero());
    assert_eq!(x().over(lit(1.0)), x());
}

#[test]
fn constants_fold_through_products() {
    check(
        x().times(lit(1.5)).times(sin(col("y"))).times(lit(2.0)),
        lit(2.0) * (sin(col("y")) * (lit(1.5) * col("x"))),
        col("x") * sin(col("y")) * lit(3.0),
    );
    check(
        x().times(-(lit(2.0) * col("y"))).neg(),
        -((-(lit(2.0) * col("y"))) * col("x")),
        col("x") * col("y") * lit(2.0),
    );
}

#[test]
fn constants_fold_through_quotients() {
    check(
        x().times(lit(3.0)).over(lit(2.0)),
        lit(3.0) * col("x") / lit(2.0),
        col("x") * lit(1.5),
    );
    check(
        x().over(lit(2.0) * cos(col("y"))),
        col("x") / (lit(2.0) * cos(col("y"))),
        col("x") * lit(0.5) / cos(col("y")),
    );
    // Dividing by zero is left as written.
    check(x().over(lit(0.0)), col("x") / lit(0.0), col("x") / lit(0.0));
}

#[test]
fn like_terms_collect() {
    let x3 = x().times(lit(3.0));
    let three_x = Tangent::new(lit(3.0) * col("x"));
    check(
        x3.plus(&three_x),
        col("x") * lit(3.0) + lit(3.0) * col("x"),
        col("x") * lit(6.0),
    );
    // In any order of factors, and with divisors.
    let xy = Tangent::new(col("x") * col("y")).over(cos(col("x")));
    let yx = Tangent::new(col("y") * col("x"))
        .times(lit(2.0))
        .over(cos(col("x")));
    check(
        xy.plus(&yx),
        col("x") * col("y") / cos(col("x")) + lit(2.0) * (col("y") * col("x")) / cos(col("x")),
        col("x") * col("y") * lit(3.0) / cos(col("x")),
    );
    // Unlike terms keep their order.
    check(
        x().plus(&Tangent::new(col("y"))).plus(&x()),
        col("x") + col("y") + col("x"),
        col("x") * lit(2.0) + col("y"),
    );
}

#[test]
fn like_terms_cancel() {
    assert!(x()
        .times(lit(3.0))
        .minus(&Tangent::new(lit(3.0) * col("x")))
        .is_zero());
    check(
        x().plus(&Tangent::new(col("y"))).minus(&x()),
        col("x") + col("y") - col("x"),
        col("y"),
    );
}

#[test]
fn negative_terms_are_subtracted() {
    check(
        Tangent::new(col("y")).minus(&x().times(lit(4.0))),
        col("y") - lit(4.0) * col("x"),
        col("y") - col("x") * lit(4.0),
    );
    check(x().neg(), -col("x"), -col("x"));
    // Alone, a negative coefficient is a negative literal, not a negation.
    check(
        x().times(lit(-2.0)),
        lit(-2.0) * col("x"),
        col("x") * lit(-2.0),
    );
}

#[test]
fn primal_products_split_along_their_chain() {
    // `3 * x * x` is `(3 * x) * x`: the coefficient 3 and the factors x, x.
    let primal = lit(3.0) * col("x") * col("x");
    check(
        Tangent::new(lit(1.0)).times(primal.clone()),
        primal,
        col("x") * col("x") * lit(3.0),
    );
    // A square keeps both copies whole: `u * u` with u = sin(x) · y.
    let u = sin(col("x")) * col("y");
    check(
        Tangent::new(col("y")).times(u.clone() * u.clone()),
        u.clone() * u.clone() * col("y"),
        u.clone() * u * col("y"),
    );
    // A right operand that is a product stays one factor.
    let right = col("y") * sin(col("x"));
    check(
        x().times(col("x") * right.clone()),
        col("x") * right.clone() * col("x"),
        col("x") * right * col("x"),
    );
}

#[test]
fn sums_are_not_distributed() {
    let sum = x().plus(&Tangent::new(col("y")));
    check(
        sum.times(sin(col("x"))),
        sin(col("x")) * (col("x") + col("y")),
        (col("x") + col("y")) * sin(col("x")),
    );
    check(
        sum.over(cos(col("y"))),
        (col("x") + col("y")) / cos(col("y")),
        (col("x") + col("y")) / cos(col("y")),
    );
    // A constant scales every term.
    check(
        sum.times(lit(2.0)),
        lit(2.0) * (col("x") + col("y")),
        col("x") * lit(2.0) + col("y") * lit(2.0),
    );
}

#[test]
fn sizes_count_the_written_expression() {
    let tangents = [
        x(),
        x().times(lit(3.0)),
        x().times(lit(-3.0)).over(cos(col("y")) * col("y")),
        x().plus(&Tangent::new(col("y"))).times(sin(col("x"))),
        Tangent::new(lit(2.5)),
        Tangent::new(col("y")).minus(&x().times(lit(4.0))),
    ];
    for t in tangents {
        assert_eq!(t.nodes(), nodes(&t.clone().into_expr()), "{t:?}");
    }
}

#[test]
fn polynomials_differentiate_as_by_hand() {
    let x = || col("x");
    let f = lit(3) * x() * x() * x() - lit(2) * x() * x() + x() - lit(5);
    let d = differentiate(&f, &Column::from_name("x")).unwrap();
    assert_eq!(d, x() * x() * lit(9.0) - x() * lit(4.0) + lit(1.0));
    same_values(&d, &(lit(9.0) * x() * x() - lit(4.0) * x() + lit(1.0)));
}

#[test]
fn nested_chains_are_one_product() {
    // f_d = tanh(1.5 · f_{d−1} + 0.1): the derivative is one factor 1 − f_k²
    // per level times 1.5^d, the deepest factor last, so the product nests
    // no deeper than it.
    let depth = 6;
    let mut f = col("x");
    let mut want = lit(1.0);
    let mut levels = vec![];
    for _ in 0..depth {
        f = tanh(lit(1.5) * f + lit(0.1));
        want = (lit(1.0) - f.clone() * f.clone()) * (lit(1.5) * want);
        levels.push(lit(1.0) - f.clone() * f.clone());
    }
    let d = linearize(&f, &[(Column::from_name("x"), lit(1.0))]).unwrap();
    same_values(&d, &want);
    let product = levels.into_iter().reduce(|p, l| p * l).unwrap();
    assert_eq!(d, product * lit(1.5_f64.powi(depth)));
}

#[test]
fn exponentials_keep_their_factors() {
    // d/dx sin(x) · exp(−x²): two terms, each one product.
    let x = || col("x");
    let f = sin(x()) * exp(-(x() * x()));
    let d = differentiate(&f, &Column::from_name("x")).unwrap();
    let want = cos(x()) * exp(-(x() * x())) - lit(2.0) * x() * sin(x()) * exp(-(x() * x()));
    same_values(&d, &want);
    assert_eq!(
        d,
        cos(x()) * exp(-(x() * x())) - x() * exp(-(x() * x())) * sin(x()) * lit(2.0)
    );
}

#[test]
fn softplus_differentiates_to_the_sigmoid() {
    // ln(1 + e^v): dv / (1 + e^−v), one exponential, written as by hand.
    let (x, l) = (|| col("x"), || col("y"));
    let logistic = ln(lit(1) + exp(-l() * (lit(0.8) * x() + lit(0.3))));
    let d = differentiate(&logistic, &Column::from_name("x")).unwrap();
    let by_hand = lit(-0.8) * l() / (lit(1.0) + exp(l() * (lit(0.8) * x() + lit(0.3))));
    same_values(&d, &by_hand);
    assert_eq!(
        d,
        l() * lit(-0.8) / (lit(1.0) + exp(l() * (lit(0.8) * x() + lit(0.3))))
    );

    let softplus = ln(exp(x()) + lit(1.0));
    let d = differentiate(&softplus, &Column::from_name("x")).unwrap();
    assert_eq!(d, lit(1.0) / (lit(1.0) + exp(-x())));

    // ln(2 + e^x) is no softplus: the quotient stays as the rule writes it.
    let shifted = ln(lit(2.0) + exp(x()));
    let d = differentiate(&shifted, &Column::from_name("x")).unwrap();
    assert_eq!(d, exp(x()) / (lit(2.0) + exp(x())));
}
