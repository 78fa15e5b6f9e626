//! Derivatives at NULL, NaN, +inf and −inf, for every family of rules.
//!
//! Each row of [`table`] is one derivative, `grad(f, x)`, evaluated by a real
//! session at a finite point and at the four special inputs of `x` (the other
//! columns hold `y = 2` and `n = NULL`). The expected values come from the
//! rule's formula read with IEEE arithmetic and DataFusion's NULL semantics;
//! README.md's "NULL, NaN and infinities" summarises them, and the comments
//! mark the entries that are not what the mathematics alone would say.

use std::fmt;

use crate::common::{context, register, rows};

/// An expected (or observed) value of a derivative.
#[derive(Clone, Copy)]
enum V {
    Null,
    NaN,
    Inf,
    NegInf,
    /// A finite value; `0.0` also matches `-0.0`.
    F(f64),
}

use V::{Inf, NaN, NegInf, Null, F};

impl V {
    fn of(value: Option<f64>) -> Self {
        match value {
            None => Null,
            Some(v) if v.is_nan() => NaN,
            Some(v) if v == f64::INFINITY => Inf,
            Some(v) if v == f64::NEG_INFINITY => NegInf,
            Some(v) => F(v),
        }
    }

    fn matches(self, other: V) -> bool {
        match (self, other) {
            (Null, Null) | (NaN, NaN) | (Inf, Inf) | (NegInf, NegInf) => true,
            (F(a), F(b)) => (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
            _ => false,
        }
    }
}

impl fmt::Display for V {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Null => write!(f, "NULL"),
            NaN => write!(f, "NaN"),
            Inf => write!(f, "inf"),
            NegInf => write!(f, "-inf"),
            F(v) => write!(f, "{}", (v * 1e9).round() / 1e9),
        }
    }
}

/// The inputs of `x`, after the finite point of each row.
const SPECIAL: [Option<f64>; 4] = [
    None,
    Some(f64::NAN),
    Some(f64::INFINITY),
    Some(f64::NEG_INFINITY),
];
const SPECIAL_NAMES: [&str; 4] = ["NULL", "NaN", "+inf", "-inf"];

struct Row {
    family: &'static str,
    f: &'static str,
    /// The finite point, where the derivative is checked for contrast.
    at: f64,
    /// `grad(f, x)` at `at`, NULL, NaN, +inf and −inf.
    expected: [V; 5],
}

fn row(family: &'static str, f: &'static str, at: f64, expected: [V; 5]) -> Row {
    Row {
        family,
        f,
        at,
        expected,
    }
}

/// The expected table, by family.
fn table() -> Vec<Row> {
    let (ln2, ln10) = (std::f64::consts::LN_2, std::f64::consts::LN_10);
    let pi = std::f64::consts::PI;
    vec![
        // Arithmetic. A derivative that folds to a constant does not look at
        // x, so it is defined where f is NULL or NaN (surprising, but it is
        // the derivative of the function, which is constant).
        row(
            "arithmetic",
            "x + y",
            1.5,
            [F(1.0), F(1.0), F(1.0), F(1.0), F(1.0)],
        ),
        row(
            "arithmetic",
            "x + n",
            1.5,
            [F(1.0), F(1.0), F(1.0), F(1.0), F(1.0)],
        ),
        row(
            "arithmetic",
            "y - x",
            1.5,
            [F(-1.0), F(-1.0), F(-1.0), F(-1.0), F(-1.0)],
        ),
        row(
            "arithmetic",
            "x * y",
            1.5,
            [F(2.0), F(2.0), F(2.0), F(2.0), F(2.0)],
        ),
        row("arithmetic", "x * n", 1.5, [Null, Null, Null, Null, Null]),
        row("arithmetic", "x * x", 1.5, [F(3.0), Null, NaN, Inf, NegInf]),
        row(
            "arithmetic",
            "x / y",
            1.5,
            [F(0.5), F(0.5), F(0.5), F(0.5), F(0.5)],
        ),
        // -y / x²: tends to 0 at ±inf, as the quotient flattens.
        row(
            "arithmetic",
            "y / x",
            1.5,
            [F(-2.0 / 2.25), Null, NaN, F(0.0), F(0.0)],
        ),
        // x % y is NaN at ±inf, its derivative 1.
        row(
            "arithmetic",
            "x % y",
            1.5,
            [F(1.0), F(1.0), F(1.0), F(1.0), F(1.0)],
        ),
        // -trunc(y / x): 2 % ±inf is the constant 2.
        row(
            "arithmetic",
            "y % x",
            1.5,
            [F(-1.0), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "arithmetic",
            "-x",
            1.5,
            [F(-1.0), F(-1.0), F(-1.0), F(-1.0), F(-1.0)],
        ),
        // Powers and roots.
        row("power", "power(x, 3)", 1.5, [F(6.75), Null, NaN, Inf, Inf]),
        // 0.5 · x^(−0.5): power(−inf, −0.5) is +0 in IEEE, although
        // power(−inf, 0.5) is +inf.
        row(
            "power",
            "power(x, 0.5)",
            4.0,
            [F(0.25), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "power",
            "power(x, y)",
            1.5,
            [F(3.0), Null, NaN, Inf, NegInf],
        ),
        row(
            "power",
            "power(y, x)",
            0.5,
            [F(2f64.sqrt() * ln2), Null, NaN, Inf, F(0.0)],
        ),
        row("power", "sqrt(x)", 4.0, [F(0.25), Null, NaN, F(0.0), NaN]),
        row(
            "power",
            "cbrt(x)",
            8.0,
            [F(1.0 / 12.0), Null, NaN, F(0.0), F(0.0)],
        ),
        // Exponentials and logarithms. 1 / x at −inf is −0, outside the
        // domain, where the logarithm itself is NaN (surprising).
        row(
            "exp_log",
            "exp(x)",
            0.5,
            [F(0.5f64.exp()), Null, NaN, Inf, F(0.0)],
        ),
        row("exp_log", "ln(x)", 2.0, [F(0.5), Null, NaN, F(0.0), F(0.0)]),
        // Softplus: the sigmoid 1 / (1 + e⁻ˣ), so 1 at +inf rather than
        // inf / inf.
        row(
            "exp_log",
            "ln(1 + exp(x))",
            1.5,
            [F(1.0 / (1.0 + (-1.5f64).exp())), Null, NaN, F(1.0), F(0.0)],
        ),
        row(
            "exp_log",
            "log(x)",
            2.0,
            [F(0.5 / ln10), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "exp_log",
            "log2(x)",
            2.0,
            [F(0.5 / ln2), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "exp_log",
            "log10(x)",
            2.0,
            [F(0.5 / ln10), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "exp_log",
            "log(y, x)",
            2.0,
            [F(0.5 / ln2), Null, NaN, F(0.0), F(0.0)],
        ),
        // −log_x(y) / (x ln x): log(+inf, 2) = 0, log(−inf, 2) is NaN.
        row(
            "exp_log",
            "log(x, y)",
            3.0,
            [
                F(-(ln2 / 3f64.ln()) / (3.0 * 3f64.ln())),
                Null,
                NaN,
                F(0.0),
                NaN,
            ],
        ),
        // Trigonometry: periodic functions have no limit at ±inf.
        row(
            "trig",
            "sin(x)",
            0.5,
            [F(0.5f64.cos()), Null, NaN, NaN, NaN],
        ),
        row(
            "trig",
            "cos(x)",
            0.5,
            [F(-(0.5f64.sin())), Null, NaN, NaN, NaN],
        ),
        row(
            "trig",
            "tan(x)",
            0.5,
            [F(1.0 + 0.5f64.tan().powi(2)), Null, NaN, NaN, NaN],
        ),
        row(
            "trig",
            "cot(x)",
            0.5,
            [
                F(-(1.0 + (1.0 / 0.5f64.tan()).powi(2))),
                Null,
                NaN,
                NaN,
                NaN,
            ],
        ),
        row(
            "trig",
            "asin(x)",
            0.5,
            [F(1.0 / 0.75f64.sqrt()), Null, NaN, NaN, NaN],
        ),
        row(
            "trig",
            "acos(x)",
            0.5,
            [F(-1.0 / 0.75f64.sqrt()), Null, NaN, NaN, NaN],
        ),
        row(
            "trig",
            "atan(x)",
            0.5,
            [F(1.0 / 1.25), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "trig",
            "atan2(x, y)",
            1.0,
            [F(2.0 / 5.0), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "trig",
            "atan2(y, x)",
            1.0,
            [F(-2.0 / 5.0), Null, NaN, F(0.0), F(0.0)],
        ),
        // Linear: a constant derivative, defined at NULL as for x + y.
        row(
            "trig",
            "degrees(x)",
            0.5,
            [
                F(180.0 / pi),
                F(180.0 / pi),
                F(180.0 / pi),
                F(180.0 / pi),
                F(180.0 / pi),
            ],
        ),
        row(
            "trig",
            "radians(x)",
            0.5,
            [
                F(pi / 180.0),
                F(pi / 180.0),
                F(pi / 180.0),
                F(pi / 180.0),
                F(pi / 180.0),
            ],
        ),
        // Hyperbolic functions. acosh and atanh: the formula's limit outside
        // the domain, where the functions are NaN (surprising).
        row(
            "hyperbolic",
            "sinh(x)",
            0.5,
            [F(0.5f64.cosh()), Null, NaN, Inf, Inf],
        ),
        row(
            "hyperbolic",
            "cosh(x)",
            0.5,
            [F(0.5f64.sinh()), Null, NaN, Inf, NegInf],
        ),
        row(
            "hyperbolic",
            "tanh(x)",
            0.5,
            [F(1.0 - 0.5f64.tanh().powi(2)), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "hyperbolic",
            "asinh(x)",
            0.5,
            [F(1.0 / 1.25f64.sqrt()), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "hyperbolic",
            "acosh(x)",
            2.0,
            [F(1.0 / 3f64.sqrt()), Null, NaN, F(0.0), F(0.0)],
        ),
        row(
            "hyperbolic",
            "atanh(x)",
            0.5,
            [F(1.0 / 0.75), Null, NaN, F(0.0), F(0.0)],
        ),
        // Piecewise functions. abs: signum(x), which is NaN at NaN.
        row(
            "piecewise",
            "abs(x)",
            -1.5,
            [F(-1.0), Null, NaN, F(1.0), F(-1.0)],
        ),
        // Step functions have derivative 0 everywhere, NULL and NaN included
        // (surprising where f is NULL: the derivative is the literal 0).
        row(
            "piecewise",
            "floor(x)",
            1.5,
            [F(0.0), F(0.0), F(0.0), F(0.0), F(0.0)],
        ),
        row(
            "piecewise",
            "ceil(x)",
            1.5,
            [F(0.0), F(0.0), F(0.0), F(0.0), F(0.0)],
        ),
        row(
            "piecewise",
            "round(x)",
            1.5,
            [F(0.0), F(0.0), F(0.0), F(0.0), F(0.0)],
        ),
        row(
            "piecewise",
            "trunc(x)",
            1.5,
            [F(0.0), F(0.0), F(0.0), F(0.0), F(0.0)],
        ),
        row(
            "piecewise",
            "signum(x)",
            1.5,
            [F(0.0), F(0.0), F(0.0), F(0.0), F(0.0)],
        ),
        // greatest/least follow the argument they pick: NULL is skipped (y
        // is picked), and NaN compares above every number, as in DataFusion's
        // own greatest (which returns NaN) and least (which returns y).
        row(
            "piecewise",
            "greatest(x, y)",
            3.0,
            [F(1.0), F(0.0), F(1.0), F(1.0), F(0.0)],
        ),
        row(
            "piecewise",
            "least(x, y)",
            1.0,
            [F(1.0), F(0.0), F(0.0), F(0.0), F(1.0)],
        ),
        row(
            "piecewise",
            "greatest(x, y, 0)",
            3.0,
            [F(1.0), F(0.0), F(1.0), F(1.0), F(0.0)],
        ),
        // NULL handling follows the argument chosen.
        row(
            "nulls",
            "coalesce(x, y)",
            1.5,
            [F(1.0), F(0.0), F(1.0), F(1.0), F(1.0)],
        ),
        // coalesce(NULL, NULL) is NULL, its derivative 1 (surprising).
        row(
            "nulls",
            "coalesce(n, x)",
            1.5,
            [F(1.0), F(1.0), F(1.0), F(1.0), F(1.0)],
        ),
        row(
            "nulls",
            "nullif(x, y)",
            1.5,
            [F(1.0), Null, F(1.0), F(1.0), F(1.0)],
        ),
        // nvl2(y, x, 1) is x, NULL at NULL; its derivative 1 (surprising).
        row(
            "nulls",
            "nvl2(y, x, 1)",
            1.5,
            [F(1.0), F(1.0), F(1.0), F(1.0), F(1.0)],
        ),
        row(
            "nulls",
            "nvl2(x, y, x)",
            1.5,
            [F(0.0), F(1.0), F(0.0), F(0.0), F(0.0)],
        ),
    ]
}

#[tokio::test]
async fn derivatives_at_null_nan_and_infinities_follow_the_table() {
    let ctx = context();
    let mut report = vec![];
    let mut mismatches = 0;
    let families: std::collections::BTreeSet<&str> = table().iter().map(|r| r.family).collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        [
            "arithmetic",
            "exp_log",
            "hyperbolic",
            "nulls",
            "piecewise",
            "power",
            "trig"
        ],
        "every family of rules has rows"
    );
    for row in table() {
        let x: Vec<Option<f64>> = std::iter::once(Some(row.at)).chain(SPECIAL).collect();
        register(
            &ctx,
            "t",
            &[("x", x), ("y", vec![Some(2.0); 5]), ("n", vec![None; 5])],
        );
        let sql = format!("SELECT {f}, grad({f}, x) FROM t ORDER BY id", f = row.f);
        let got = rows(&ctx, &sql).await;
        let at = format!("{}", row.at);
        let inputs = std::iter::once(at.as_str()).chain(SPECIAL_NAMES);
        for ((input, expected), values) in inputs.zip(row.expected).zip(got) {
            let (value, derivative) = (V::of(values[0]), V::of(values[1]));
            let ok = derivative.matches(expected);
            mismatches += usize::from(!ok);
            report.push(format!(
                "{mark} {family:<10} {f:<18} x = {input:<5} f = {value:<14} expected {expected:<14} got {derivative}",
                mark = if ok { " " } else { "✗" },
                family = row.family,
                f = format!("grad({}, x)", row.f),
                expected = expected.to_string(),
                value = value.to_string(),
            ));
        }
    }
    assert!(
        mismatches == 0,
        "{mismatches} derivatives differ from the table (✗):\n{}",
        report.join("\n")
    );
}
