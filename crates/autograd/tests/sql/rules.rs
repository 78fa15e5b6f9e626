//! Every derivative rule, checked at many points against its analytic
//! derivative (written here in Rust) and against central finite differences
//! of the primal (evaluated by DataFusion).

use std::collections::BTreeSet;
use std::f64::consts::{LN_10, LN_2, PI};

use crate::common::{assert_close, column, context, register, Rng};

pub struct Case {
    /// The primitive this case exercises, as named in `primitives()`.
    pub primitive: &'static str,
    pub f: &'static str,
    pub wrt: &'static str,
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub d: fn(f64, f64) -> f64,
    /// The primal the finite differences move, where it is not `f`: what
    /// stop_gradient holds is read at the unmoved point (`x0`, `y0`).
    pub moved: Option<&'static str>,
}

const ANY: (f64, f64) = (-2.0, 2.0);
const POS: (f64, f64) = (0.2, 3.0);
const UNIT: (f64, f64) = (-0.9, 0.9);

fn case(
    primitive: &'static str,
    f: &'static str,
    wrt: &'static str,
    x: (f64, f64),
    y: (f64, f64),
    d: fn(f64, f64) -> f64,
) -> Case {
    Case {
        primitive,
        f,
        wrt,
        x,
        y,
        d,
        moved: None,
    }
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else {
        -1.0
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        // arithmetic
        case("+", "x + y", "x", ANY, ANY, |_, _| 1.0),
        case("+", "x + y", "y", ANY, ANY, |_, _| 1.0),
        case("-", "x - y", "y", ANY, ANY, |_, _| -1.0),
        case("*", "x * y", "x", ANY, ANY, |_, y| y),
        case("*", "x * y", "y", ANY, ANY, |x, _| x),
        case("*", "x * x", "x", ANY, ANY, |x, _| 2.0 * x),
        case("/", "x / y", "x", ANY, POS, |_, y| 1.0 / y),
        case("/", "x / y", "y", ANY, POS, |x, y| -x / (y * y)),
        case("%", "x % y", "x", (1.0, 10.0), (0.7, 3.0), |_, _| 1.0),
        case("%", "x % y", "y", (1.0, 10.0), (0.7, 3.0), |x, y| {
            -(x / y).trunc()
        }),
        case("negative", "-(x * y)", "x", ANY, ANY, |_, y| -y),
        // powers and roots
        case("power", "power(x, 3)", "x", ANY, ANY, |x, _| 3.0 * x * x),
        case("power", "power(x, 0.5)", "x", POS, ANY, |x, _| {
            0.5 / x.sqrt()
        }),
        case("power", "power(x, y)", "x", POS, ANY, |x, y| {
            y * x.powf(y - 1.0)
        }),
        case("power", "power(x, y)", "y", POS, ANY, |x, y| {
            x.powf(y) * x.ln()
        }),
        case("power", "power(2.5, x)", "x", ANY, ANY, |x, _| {
            2.5f64.powf(x) * 2.5f64.ln()
        }),
        case("power", "power(x, x)", "x", POS, ANY, |x, _| {
            x.powf(x) * (x.ln() + 1.0)
        }),
        case("pow", "pow(x, y)", "y", POS, ANY, |x, y| x.powf(y) * x.ln()),
        case("sqrt", "sqrt(x)", "x", POS, ANY, |x, _| 0.5 / x.sqrt()),
        case("cbrt", "cbrt(x)", "x", POS, ANY, |x, _| {
            1.0 / (3.0 * x.cbrt().powi(2))
        }),
        case("cbrt", "cbrt(x)", "x", (-3.0, -0.2), ANY, |x, _| {
            1.0 / (3.0 * x.cbrt().powi(2))
        }),
        // exponentials and logarithms
        case("exp", "exp(x)", "x", ANY, ANY, |x, _| x.exp()),
        case("ln", "ln(x)", "x", POS, ANY, |x, _| 1.0 / x),
        // softplus, whose derivative is written as the logistic sigmoid
        case("ln", "ln(1 + exp(-y * x))", "x", ANY, ANY, |x, y| {
            -y / (1.0 + (y * x).exp())
        }),
        case("ln", "ln(exp(x * y) + 1)", "y", ANY, ANY, |x, y| {
            x / (1.0 + (-x * y).exp())
        }),
        case("log", "log(x)", "x", POS, ANY, |x, _| 1.0 / (x * LN_10)),
        case("log", "log(y, x)", "x", POS, (1.5, 4.0), |x, y| {
            1.0 / (x * y.ln())
        }),
        case("log", "log(y, x)", "y", POS, (1.5, 4.0), |x, y| {
            -x.ln() / (y * y.ln().powi(2))
        }),
        case("log2", "log2(x)", "x", POS, ANY, |x, _| 1.0 / (x * LN_2)),
        case("log10", "log10(x)", "x", POS, ANY, |x, _| 1.0 / (x * LN_10)),
        // trigonometry
        case("sin", "sin(x)", "x", ANY, ANY, |x, _| x.cos()),
        case("cos", "cos(x)", "x", ANY, ANY, |x, _| -x.sin()),
        case("tan", "tan(x)", "x", (-1.2, 1.2), ANY, |x, _| {
            1.0 / x.cos().powi(2)
        }),
        case("cot", "cot(x)", "x", (0.3, 2.8), ANY, |x, _| {
            -1.0 / x.sin().powi(2)
        }),
        case("asin", "asin(x)", "x", UNIT, ANY, |x, _| {
            1.0 / (1.0 - x * x).sqrt()
        }),
        case("acos", "acos(x)", "x", UNIT, ANY, |x, _| {
            -1.0 / (1.0 - x * x).sqrt()
        }),
        case("atan", "atan(x)", "x", ANY, ANY, |x, _| 1.0 / (1.0 + x * x)),
        case("atan2", "atan2(y, x)", "x", POS, ANY, |x, y| {
            -y / (x * x + y * y)
        }),
        case("atan2", "atan2(y, x)", "y", POS, ANY, |x, y| {
            x / (x * x + y * y)
        }),
        case("degrees", "degrees(x)", "x", ANY, ANY, |_, _| 180.0 / PI),
        case("radians", "radians(x)", "x", ANY, ANY, |_, _| PI / 180.0),
        // hyperbolic
        case("sinh", "sinh(x)", "x", ANY, ANY, |x, _| x.cosh()),
        case("cosh", "cosh(x)", "x", ANY, ANY, |x, _| x.sinh()),
        case("tanh", "tanh(x)", "x", ANY, ANY, |x, _| {
            1.0 - x.tanh().powi(2)
        }),
        case("asinh", "asinh(x)", "x", ANY, ANY, |x, _| {
            1.0 / (x * x + 1.0).sqrt()
        }),
        case("acosh", "acosh(x)", "x", (1.2, 4.0), ANY, |x, _| {
            1.0 / (x * x - 1.0).sqrt()
        }),
        case("atanh", "atanh(x)", "x", UNIT, ANY, |x, _| {
            1.0 / (1.0 - x * x)
        }),
        // piecewise
        case("abs", "abs(x)", "x", ANY, ANY, |x, _| sign(x)),
        case("signum", "signum(x) * y", "x", ANY, ANY, |_, _| 0.0),
        case("floor", "floor(x)", "x", ANY, ANY, |_, _| 0.0),
        case("ceil", "ceil(x)", "x", ANY, ANY, |_, _| 0.0),
        case("round", "round(x)", "x", ANY, ANY, |_, _| 0.0),
        case("round", "round(x, 1)", "x", ANY, ANY, |_, _| 0.0),
        case("trunc", "trunc(x)", "x", ANY, ANY, |_, _| 0.0),
        case("greatest", "greatest(x, y)", "x", ANY, ANY, |x, y| {
            if x >= y {
                1.0
            } else {
                0.0
            }
        }),
        case("greatest", "greatest(x, 0)", "x", ANY, ANY, |x, _| {
            if x >= 0.0 {
                1.0
            } else {
                0.0
            }
        }),
        case("least", "least(x, y * y)", "y", ANY, ANY, |x, y| {
            if y * y < x {
                2.0 * y
            } else {
                0.0
            }
        }),
        case(
            "case",
            "CASE WHEN x > 1 THEN x * x ELSE 3 * x END",
            "x",
            ANY,
            ANY,
            |x, _| {
                if x > 1.0 {
                    2.0 * x
                } else {
                    3.0
                }
            },
        ),
        case(
            "case",
            "CASE WHEN y > 0 THEN y END",
            "x",
            ANY,
            POS,
            |_, _| 0.0,
        ),
        // NULL handling (no NULLs here; see plan_shapes for NULL rows)
        case("coalesce", "coalesce(x * x, y)", "x", ANY, ANY, |x, _| {
            2.0 * x
        }),
        case("nvl", "nvl(x * y, y)", "x", ANY, ANY, |_, y| y),
        case("nullif", "nullif(x * 3, y)", "x", ANY, ANY, |_, _| 3.0),
        case("nvl2", "nvl2(y, x * x, y)", "x", ANY, ANY, |x, _| 2.0 * x),
        // casts, constants, other columns
        case(
            "cast",
            "CAST(x AS DECIMAL(30, 15)) * 2",
            "x",
            ANY,
            ANY,
            |_, _| 2.0,
        ),
        case(
            "cast",
            "TRY_CAST(x * x AS DOUBLE)",
            "x",
            ANY,
            ANY,
            |x, _| 2.0 * x,
        ),
        case("cast", "CAST(x * 10 AS INT)", "x", ANY, ANY, |_, _| 0.0),
        case("constant", "pi() * x + y", "x", ANY, ANY, |_, _| PI),
        case("constant", "y * 7", "x", ANY, ANY, |_, _| 0.0),
        // stop_gradient: a constant of the derivative with its argument's value
        Case {
            moved: Some("x * (x0 * y0) + sin(x)"),
            ..case(
                "stop_gradient",
                "x * stop_gradient(x * y) + sin(x)",
                "x",
                ANY,
                ANY,
                |x, y| x * y + x.cos(),
            )
        },
    ]
}

#[tokio::test]
async fn every_primitive_has_a_checked_case() {
    let tested: BTreeSet<_> = cases().iter().map(|c| c.primitive).collect();
    let missing: Vec<_> = datafusion_autograd::primitives()
        .filter(|p| !tested.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "primitives without a test case: {missing:?}"
    );
    assert!(datafusion_autograd::primitives().count() >= 35);
}

#[tokio::test]
async fn rules_match_analytic_derivatives_and_finite_differences() {
    let ctx = context();
    let mut rng = Rng::new(7);
    let h = 1e-6;
    for c in cases() {
        let n = 24;
        let xs: Vec<f64> = (0..n).map(|_| rng.uniform(c.x.0, c.x.1)).collect();
        let ys: Vec<f64> = (0..n).map(|_| rng.uniform(c.y.0, c.y.1)).collect();
        register(
            &ctx,
            "pts",
            &[
                ("x", xs.iter().map(|&v| Some(v)).collect()),
                ("y", ys.iter().map(|&v| Some(v)).collect()),
            ],
        );

        let grad = column(
            &ctx,
            &format!("SELECT grad({}, {}) FROM pts ORDER BY id", c.f, c.wrt),
        )
        .await;
        let moved = c.moved.unwrap_or(c.f);
        let shifted = |step: f64| match c.wrt {
            "x" => format!(
                "SELECT {moved} FROM (SELECT id, x + ({step}) AS x, y, x AS x0, y AS y0 FROM pts) \
                 ORDER BY id"
            ),
            _ => format!(
                "SELECT {moved} FROM (SELECT id, x, y + ({step}) AS y, x AS x0, y AS y0 FROM pts) \
                 ORDER BY id"
            ),
        };
        let plus = column(&ctx, &shifted(h)).await;
        let minus = column(&ctx, &shifted(-h)).await;

        for i in 0..n {
            let what = format!("d/d{} {} at x={}, y={}", c.wrt, c.f, xs[i], ys[i]);
            assert_close(
                grad[i],
                (c.d)(xs[i], ys[i]),
                1e-9,
                &format!("{what} (analytic)"),
            );
            let fd = (plus[i] - minus[i]) / (2.0 * h);
            assert_close(grad[i], fd, 1e-5, &format!("{what} (finite difference)"));
        }
    }
}
