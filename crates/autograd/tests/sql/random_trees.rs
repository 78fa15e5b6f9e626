//! Property test: random compositions of smooth primitives, differentiated by
//! the planner, checked against dual-number forward mode written here in Rust,
//! against central finite differences evaluated by DataFusion, and against the
//! values the engine computed before its tangent algebra folded constants
//! through products and collected like terms ([`RECORDED`]).

use std::path::PathBuf;

use crate::common::{assert_close, column, context, register, Rng};

/// Every derivative value of the property test, in order, as computed by the
/// engine whose tangents folded only literal operands (`x * 3 + 3 * x`
/// stayed as written). Simplifying a derivative must keep its value to
/// within [`RECORDED_RTOL`]. Written when [`RECORD`] is set; that rewrites
/// the reference, so it is done only when the property test's trees change.
const RECORDED: &str = "crates/autograd/tests/sql/random_trees.values";
const RECORD: &str = "DATAFUSION_AUTOGRAD_RECORD_RANDOM_TREES";
const RECORDED_RTOL: f64 = 1e-12;

/// A random expression in `x` and `y`, built from operations that are smooth
/// and finite on all of ℝ², so no point lands on a singularity.
enum Tree {
    X,
    Y,
    Const(f64),
    Unary(Unary, Box<Tree>),
    Binary(Binary, Box<Tree>, Box<Tree>),
}

#[derive(Clone, Copy)]
enum Unary {
    Sin,
    Cos,
    Tanh,
    Atan,
    Asinh,
    /// sqrt(1 + u²)
    Hypot1,
    /// ln(1 + u²)
    Log1pSquare,
    /// exp(tanh(u))
    ExpTanh,
    /// power(u, 2)
    Square,
    Neg,
}

#[derive(Clone, Copy)]
enum Binary {
    Add,
    Sub,
    Mul,
    /// u / (2 + sin(v))
    SafeDiv,
    /// atan2(u, 1.5 + v·v)
    Atan2,
}

/// A value with its derivative along the seeded direction.
#[derive(Clone, Copy)]
struct Dual(f64, f64);

impl Tree {
    fn random(rng: &mut Rng, depth: usize) -> Tree {
        if depth == 0 || rng.below(4) == 0 {
            return match rng.below(3) {
                0 => Tree::X,
                1 => Tree::Y,
                _ => Tree::Const((rng.uniform(0.5, 2.0) * 100.0).round() / 100.0),
            };
        }
        if rng.below(2) == 0 {
            use Unary::*;
            let op = [
                Sin,
                Cos,
                Tanh,
                Atan,
                Asinh,
                Hypot1,
                Log1pSquare,
                ExpTanh,
                Square,
                Neg,
            ][rng.below(10)];
            Tree::Unary(op, Box::new(Tree::random(rng, depth - 1)))
        } else {
            use Binary::*;
            let op = [Add, Sub, Mul, SafeDiv, Atan2][rng.below(5)];
            Tree::Binary(
                op,
                Box::new(Tree::random(rng, depth - 1)),
                Box::new(Tree::random(rng, depth - 1)),
            )
        }
    }

    fn sql(&self) -> String {
        match self {
            Tree::X => "x".into(),
            Tree::Y => "y".into(),
            Tree::Const(c) => format!("{c:.2}"),
            Tree::Unary(op, u) => {
                let u = u.sql();
                match op {
                    Unary::Sin => format!("sin({u})"),
                    Unary::Cos => format!("cos({u})"),
                    Unary::Tanh => format!("tanh({u})"),
                    Unary::Atan => format!("atan({u})"),
                    Unary::Asinh => format!("asinh({u})"),
                    Unary::Hypot1 => format!("sqrt(1 + ({u}) * ({u}))"),
                    Unary::Log1pSquare => format!("ln(1 + ({u}) * ({u}))"),
                    Unary::ExpTanh => format!("exp(tanh({u}))"),
                    Unary::Square => format!("power({u}, 2)"),
                    Unary::Neg => format!("-({u})"),
                }
            }
            Tree::Binary(op, u, v) => {
                let (u, v) = (u.sql(), v.sql());
                match op {
                    Binary::Add => format!("({u}) + ({v})"),
                    Binary::Sub => format!("({u}) - ({v})"),
                    Binary::Mul => format!("({u}) * ({v})"),
                    Binary::SafeDiv => format!("({u}) / (2 + sin({v}))"),
                    Binary::Atan2 => format!("atan2({u}, 1.5 + ({v}) * ({v}))"),
                }
            }
        }
    }

    /// Forward mode on dual numbers: `seed` picks the variable (0 = x, 1 = y).
    fn eval(&self, x: f64, y: f64, seed: usize) -> Dual {
        match self {
            Tree::X => Dual(x, if seed == 0 { 1.0 } else { 0.0 }),
            Tree::Y => Dual(y, if seed == 1 { 1.0 } else { 0.0 }),
            Tree::Const(c) => Dual(*c, 0.0),
            Tree::Unary(op, u) => {
                let Dual(a, da) = u.eval(x, y, seed);
                match op {
                    Unary::Sin => Dual(a.sin(), a.cos() * da),
                    Unary::Cos => Dual(a.cos(), -a.sin() * da),
                    Unary::Tanh => Dual(a.tanh(), (1.0 - a.tanh().powi(2)) * da),
                    Unary::Atan => Dual(a.atan(), da / (1.0 + a * a)),
                    Unary::Asinh => Dual(a.asinh(), da / (1.0 + a * a).sqrt()),
                    Unary::Hypot1 => Dual((1.0 + a * a).sqrt(), a * da / (1.0 + a * a).sqrt()),
                    Unary::Log1pSquare => Dual((1.0 + a * a).ln(), 2.0 * a * da / (1.0 + a * a)),
                    Unary::ExpTanh => {
                        let t = a.tanh();
                        Dual(t.exp(), t.exp() * (1.0 - t * t) * da)
                    }
                    Unary::Square => Dual(a * a, 2.0 * a * da),
                    Unary::Neg => Dual(-a, -da),
                }
            }
            Tree::Binary(op, u, v) => {
                let (Dual(a, da), Dual(b, db)) = (u.eval(x, y, seed), v.eval(x, y, seed));
                match op {
                    Binary::Add => Dual(a + b, da + db),
                    Binary::Sub => Dual(a - b, da - db),
                    Binary::Mul => Dual(a * b, da * b + a * db),
                    Binary::SafeDiv => {
                        let q = 2.0 + b.sin();
                        Dual(a / q, (da * q - a * b.cos() * db) / (q * q))
                    }
                    Binary::Atan2 => {
                        let r = 1.5 + b * b;
                        Dual(a.atan2(r), (r * da - a * 2.0 * b * db) / (a * a + r * r))
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn random_trees_match_dual_numbers_and_finite_differences() {
    let ctx = context();
    let mut rng = Rng::new(2024);
    let n = 12;
    let h = 1e-6;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(RECORDED);
    let mut values = vec![];
    for _ in 0..60 {
        let tree = Tree::random(&mut rng, 4);
        let f = tree.sql();
        let xs: Vec<f64> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let ys: Vec<f64> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        register(
            &ctx,
            "pts",
            &[
                ("x", xs.iter().map(|&v| Some(v)).collect()),
                ("y", ys.iter().map(|&v| Some(v)).collect()),
            ],
        );
        for (seed, wrt) in ["x", "y"].into_iter().enumerate() {
            let grad = column(
                &ctx,
                &format!("SELECT grad({f}, {wrt}) FROM pts ORDER BY id"),
            )
            .await;
            let shifted = |step: f64| {
                let (sx, sy) = if seed == 0 { (step, 0.0) } else { (0.0, step) };
                format!("SELECT {f} FROM (SELECT id, x + ({sx}) AS x, y + ({sy}) AS y FROM pts) ORDER BY id")
            };
            let plus = column(&ctx, &shifted(h)).await;
            let minus = column(&ctx, &shifted(-h)).await;
            for i in 0..n {
                let what = format!("d/d{wrt} {f} at x={}, y={}", xs[i], ys[i]);
                values.push((what.clone(), grad[i]));
                let dual = tree.eval(xs[i], ys[i], seed).1;
                assert_close(grad[i], dual, 1e-9, &format!("{what} (dual numbers)"));
                assert_close(
                    grad[i],
                    (plus[i] - minus[i]) / (2.0 * h),
                    1e-5,
                    &format!("{what} (finite difference)"),
                );
            }
        }
    }
    if std::env::var_os(RECORD).is_some() {
        let text: String = values.iter().map(|(_, v)| format!("{v:?}\n")).collect();
        std::fs::write(&path, text).unwrap();
    }
    let recorded: Vec<f64> = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {RECORDED}: {e}"))
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    assert_eq!(recorded.len(), values.len(), "{RECORDED} holds every value");
    for ((what, got), want) in values.iter().zip(recorded) {
        let difference = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        assert!(
            difference <= RECORDED_RTOL,
            "{what}: {got} against {want} recorded, relative difference {difference:e}"
        );
    }
}
