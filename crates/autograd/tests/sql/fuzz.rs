//! Property test at scale: random expressions over every primitive, with
//! `CASE`, casts, constants of both signs and nested `grad`/`jvp`/`vjp`,
//! differentiated four ways — by the planner, through the SQL bridge, as
//! derivative SQL text read back, and checked by `check_grad` — against
//! hyper-dual numbers written here (exact first and mixed second
//! derivatives) and against central differences.
//!
//! `AUTOGRAD_FUZZ_TREES=10000 cargo test -p datafusion-autograd --test sql fuzz`
//! runs the full count; the default run checks 150 trees. A
//! failure prints the smallest expression that still fails.

use std::collections::BTreeSet;
use std::ops::{Add, Div, Mul, Neg, Sub};

use datafusion::prelude::SessionContext;
use datafusion_autograd::{check_grad, differentiate_sql, primitives, rewrite_sql, Dialect};

use crate::common::{context, register, Rng};

/// A number with two infinitesimal parts: `a + b·ε₁ + c·ε₂ + d·ε₁ε₂`, with
/// ε₁² = ε₂² = 0. Seeding ε₁ and ε₂ on two variables gives the value, both
/// first derivatives and the mixed second derivative at once.
#[derive(Clone, Copy, Debug)]
struct Hyper {
    a: f64,
    b: f64,
    c: f64,
    d: f64,
}

impl Hyper {
    fn constant(a: f64) -> Self {
        Hyper {
            a,
            b: 0.0,
            c: 0.0,
            d: 0.0,
        }
    }

    /// `g(self)` for a function with `g`, `g′`, `g″` at `self.a`.
    fn chain(self, g: f64, g1: f64, g2: f64) -> Self {
        Hyper {
            a: g,
            b: g1 * self.b,
            c: g1 * self.c,
            d: g1 * self.d + g2 * self.b * self.c,
        }
    }

    fn sin(self) -> Self {
        self.chain(self.a.sin(), self.a.cos(), -self.a.sin())
    }
    fn cos(self) -> Self {
        self.chain(self.a.cos(), -self.a.sin(), -self.a.cos())
    }
    fn tan(self) -> Self {
        let t = self.a.tan();
        self.chain(t, 1.0 + t * t, 2.0 * t * (1.0 + t * t))
    }
    fn cot(self) -> Self {
        let c = 1.0 / self.a.tan();
        self.chain(c, -(1.0 + c * c), 2.0 * c * (1.0 + c * c))
    }
    fn asin(self) -> Self {
        let s = 1.0 - self.a * self.a;
        self.chain(self.a.asin(), 1.0 / s.sqrt(), self.a / s.powf(1.5))
    }
    fn acos(self) -> Self {
        let s = 1.0 - self.a * self.a;
        self.chain(self.a.acos(), -1.0 / s.sqrt(), -self.a / s.powf(1.5))
    }
    fn atan(self) -> Self {
        let s = 1.0 + self.a * self.a;
        self.chain(self.a.atan(), 1.0 / s, -2.0 * self.a / (s * s))
    }
    fn sinh(self) -> Self {
        self.chain(self.a.sinh(), self.a.cosh(), self.a.sinh())
    }
    fn cosh(self) -> Self {
        self.chain(self.a.cosh(), self.a.sinh(), self.a.cosh())
    }
    fn tanh(self) -> Self {
        let t = self.a.tanh();
        self.chain(t, 1.0 - t * t, -2.0 * t * (1.0 - t * t))
    }
    fn asinh(self) -> Self {
        let s = 1.0 + self.a * self.a;
        self.chain(self.a.asinh(), 1.0 / s.sqrt(), -self.a / s.powf(1.5))
    }
    fn acosh(self) -> Self {
        let s = self.a * self.a - 1.0;
        self.chain(self.a.acosh(), 1.0 / s.sqrt(), -self.a / s.powf(1.5))
    }
    fn atanh(self) -> Self {
        let s = 1.0 - self.a * self.a;
        self.chain(self.a.atanh(), 1.0 / s, 2.0 * self.a / (s * s))
    }
    fn exp(self) -> Self {
        let e = self.a.exp();
        self.chain(e, e, e)
    }
    fn ln(self) -> Self {
        self.chain(self.a.ln(), 1.0 / self.a, -1.0 / (self.a * self.a))
    }
    fn sqrt(self) -> Self {
        let r = self.a.sqrt();
        self.chain(r, 0.5 / r, -0.25 / (r * self.a))
    }
    fn cbrt(self) -> Self {
        let r = self.a.cbrt();
        self.chain(r, r / (3.0 * self.a), -2.0 * r / (9.0 * self.a * self.a))
    }
    fn scale(self, k: f64) -> Self {
        self * Hyper::constant(k)
    }
    /// A function that is constant between jumps: derivative zero.
    fn step(self, value: f64) -> Self {
        Hyper::constant(value)
    }
    fn powf(self, exponent: Self) -> Self {
        (self.ln() * exponent).exp()
    }
    fn atan2(self, x: Self) -> Self {
        // atan2(y, x) = atan(y / x) for x > 0, the only case generated.
        (self / x).atan()
    }
}

impl Add for Hyper {
    type Output = Hyper;
    fn add(self, o: Hyper) -> Hyper {
        Hyper {
            a: self.a + o.a,
            b: self.b + o.b,
            c: self.c + o.c,
            d: self.d + o.d,
        }
    }
}
impl Sub for Hyper {
    type Output = Hyper;
    fn sub(self, o: Hyper) -> Hyper {
        self + -o
    }
}
impl Neg for Hyper {
    type Output = Hyper;
    fn neg(self) -> Hyper {
        Hyper {
            a: -self.a,
            b: -self.b,
            c: -self.c,
            d: -self.d,
        }
    }
}
impl Mul for Hyper {
    type Output = Hyper;
    fn mul(self, o: Hyper) -> Hyper {
        Hyper {
            a: self.a * o.a,
            b: self.a * o.b + self.b * o.a,
            c: self.a * o.c + self.c * o.a,
            d: self.a * o.d + self.b * o.c + self.c * o.b + self.d * o.a,
        }
    }
}
impl Div for Hyper {
    type Output = Hyper;
    fn div(self, o: Hyper) -> Hyper {
        let inverse = o.chain(1.0 / o.a, -1.0 / (o.a * o.a), 2.0 / (o.a * o.a * o.a));
        self * inverse
    }
}

/// Operations on one child, each a primitive in an argument that keeps it in
/// its domain and its values moderate.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Unary {
    Sin,
    Cos,
    Tan,
    Cot,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Exp,
    Ln,
    Log,
    Log2,
    Log10,
    Sqrt,
    Cbrt,
    Degrees,
    Radians,
    Abs,
    Signum,
    Floor,
    Ceil,
    Round,
    Trunc,
    Neg,
    Square,
    Cube,
    CastDouble,
    TryCastDouble,
    CastBigint,
    StopGradient,
}

/// Operations on two children.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Power,
    Pow,
    LogBase,
    Atan2,
    Greatest,
    Least,
    Coalesce,
    Nvl,
    Nullif,
}

/// Which marker, by which variable.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Marker {
    Grad,
    Jvp,
    Vjp,
}

#[derive(Clone, Debug)]
enum Tree {
    X,
    Y,
    Const(f64),
    Unary(Unary, Box<Tree>),
    Binary(Binary, Box<Tree>, Box<Tree>),
    /// nvl2(a, b, c)
    Nvl2(Box<Tree>, Box<Tree>, Box<Tree>),
    /// CASE WHEN a > threshold THEN b ELSE c END
    Case(Box<Tree>, f64, Box<Tree>, Box<Tree>),
    /// grad(f, v), jvp(f, v, t), vjp(f, v, t); `f` and `t` hold no markers.
    Marker(Marker, Box<Tree>, usize, Box<Tree>),
}

const UNARY: [Unary; 35] = {
    use Unary::*;
    [
        Sin,
        Cos,
        Tan,
        Cot,
        Asin,
        Acos,
        Atan,
        Sinh,
        Cosh,
        Tanh,
        Asinh,
        Acosh,
        Atanh,
        Exp,
        Ln,
        Log,
        Log2,
        Log10,
        Sqrt,
        Cbrt,
        Degrees,
        Radians,
        Abs,
        Signum,
        Floor,
        Ceil,
        Round,
        Trunc,
        Neg,
        Square,
        Cube,
        CastDouble,
        TryCastDouble,
        CastBigint,
        StopGradient,
    ]
};

const BINARY: [Binary; 14] = {
    use Binary::*;
    [
        Add, Sub, Mul, Div, Rem, Power, Pow, LogBase, Atan2, Greatest, Least, Coalesce, Nvl, Nullif,
    ]
};

/// The primitives a tree of these operations can call.
const COVERED: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "negative",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "sin",
    "cos",
    "tan",
    "cot",
    "asin",
    "acos",
    "atan",
    "atan2",
    "degrees",
    "radians",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "abs",
    "signum",
    "floor",
    "ceil",
    "round",
    "trunc",
    "greatest",
    "least",
    "coalesce",
    "nvl",
    "nullif",
    "nvl2",
    "stop_gradient",
];

impl Tree {
    fn random(rng: &mut Rng, depth: usize, markers: bool) -> Tree {
        if depth == 0 || rng.below(5) == 0 {
            return match rng.below(3) {
                0 => Tree::X,
                1 => Tree::Y,
                // Both signs, printed with enough digits to read back exactly.
                _ => Tree::Const((rng.uniform(-2.0, 2.0) * 1000.0).round() / 1000.0),
            };
        }
        let child = |rng: &mut Rng| Box::new(Tree::random(rng, depth - 1, markers));
        match rng.below(20) {
            0..=9 => Tree::Unary(UNARY[rng.below(UNARY.len())], child(rng)),
            10..=16 => {
                let op = BINARY[rng.below(BINARY.len())];
                Tree::Binary(op, child(rng), child(rng))
            }
            17 => Tree::Nvl2(child(rng), child(rng), child(rng)),
            18 => {
                let threshold = (rng.uniform(-1.0, 1.0) * 100.0).round() / 100.0;
                Tree::Case(child(rng), threshold, child(rng), child(rng))
            }
            _ if markers => {
                let marker = [Marker::Grad, Marker::Jvp, Marker::Vjp][rng.below(3)];
                let body = Box::new(Tree::random(rng, depth - 1, false));
                let operand = Box::new(Tree::random(rng, depth.saturating_sub(2), false));
                Tree::Marker(marker, body, rng.below(2), operand)
            }
            _ => Tree::Unary(Unary::Sin, child(rng)),
        }
    }

    fn sql(&self) -> String {
        let var = |v: usize| if v == 0 { "x" } else { "y" };
        match self {
            Tree::X => "x".into(),
            Tree::Y => "y".into(),
            Tree::Const(c) => format!("{c:?}"),
            Tree::Unary(op, u) => {
                let u = u.sql();
                use Unary::*;
                match op {
                    Sin => format!("sin({u})"),
                    Cos => format!("cos({u})"),
                    Tan => format!("tan(sin({u}))"),
                    Cot => format!("cot(0.8 + 0.5 * sin({u}))"),
                    Asin => format!("asin(0.9 * sin({u}))"),
                    Acos => format!("acos(0.9 * sin({u}))"),
                    Atan => format!("atan({u})"),
                    Sinh => format!("sinh(2.0 * tanh({u}))"),
                    Cosh => format!("cosh(2.0 * tanh({u}))"),
                    Tanh => format!("tanh({u})"),
                    Asinh => format!("asinh({u})"),
                    Acosh => format!("acosh(1.5 + tanh({u}) * tanh({u}))"),
                    Atanh => format!("atanh(0.9 * tanh({u}))"),
                    Exp => format!("exp(2.0 * tanh({u}))"),
                    Ln => format!("ln(1.5 + ({u}) * ({u}))"),
                    Log => format!("log(1.5 + ({u}) * ({u}))"),
                    Log2 => format!("log2(1.5 + ({u}) * ({u}))"),
                    Log10 => format!("log10(1.5 + ({u}) * ({u}))"),
                    Sqrt => format!("sqrt(1.5 + ({u}) * ({u}))"),
                    Cbrt => format!("cbrt(1.5 + ({u}) * ({u}))"),
                    Degrees => format!("degrees(tanh({u}))"),
                    Radians => format!("radians({u})"),
                    Abs => format!("abs({u})"),
                    Signum => format!("signum({u})"),
                    Floor => format!("floor({u})"),
                    Ceil => format!("ceil({u})"),
                    Round => format!("round({u})"),
                    Trunc => format!("trunc({u})"),
                    Neg => format!("-({u})"),
                    Square => format!("power({u}, 2)"),
                    Cube => format!("power({u}, 3)"),
                    CastDouble => format!("CAST({u} AS DOUBLE)"),
                    TryCastDouble => format!("TRY_CAST({u} AS DOUBLE)"),
                    CastBigint => format!("CAST(tanh({u}) * 3.0 AS BIGINT)"),
                    StopGradient => format!("stop_gradient({u})"),
                }
            }
            Tree::Binary(op, a, b) => {
                let (a, b) = (a.sql(), b.sql());
                use Binary::*;
                match op {
                    Add => format!("({a}) + ({b})"),
                    Sub => format!("({a}) - ({b})"),
                    Mul => format!("({a}) * ({b})"),
                    Div => format!("({a}) / (1.5 + ({b}) * ({b}))"),
                    Rem => format!("({a}) % (2.5 + ({b}) * ({b}))"),
                    Power => format!("power(1.5 + ({a}) * ({a}), tanh({b}))"),
                    Pow => format!("pow(1.5 + ({a}) * ({a}), tanh({b}))"),
                    LogBase => format!("log(2.5 + ({b}) * ({b}), 1.5 + ({a}) * ({a}))"),
                    Atan2 => format!("atan2({a}, 1.5 + ({b}) * ({b}))"),
                    Greatest => format!("greatest({a}, {b})"),
                    Least => format!("least({a}, {b})"),
                    Coalesce => format!("coalesce({a}, {b})"),
                    Nvl => format!("nvl({a}, {b})"),
                    Nullif => format!("nullif({a}, {b})"),
                }
            }
            Tree::Nvl2(a, b, c) => format!("nvl2({}, {}, {})", a.sql(), b.sql(), c.sql()),
            Tree::Case(a, t, b, c) => format!(
                "CASE WHEN {} > {t:?} THEN {} ELSE {} END",
                a.sql(),
                b.sql(),
                c.sql()
            ),
            Tree::Marker(m, f, v, t) => match m {
                Marker::Grad => format!("grad({}, {})", f.sql(), var(*v)),
                Marker::Jvp => format!("jvp({}, {}, {})", f.sql(), var(*v), t.sql()),
                Marker::Vjp => format!("vjp({}, {}, {})", f.sql(), var(*v), t.sql()),
            },
        }
    }

    /// The value with ε₁ and ε₂ seeded on `vars` (indices of x and y, or
    /// none); `kink` shrinks to the distance of any jump or kink on the way.
    fn eval(&self, point: [f64; 2], seeds: [Option<usize>; 2], kink: &mut f64) -> Hyper {
        let leaf = |v: usize| Hyper {
            a: point[v],
            b: f64::from(u8::from(seeds[0] == Some(v))),
            c: f64::from(u8::from(seeds[1] == Some(v))),
            d: 0.0,
        };
        let near = |kink: &mut f64, distance: f64| *kink = kink.min(distance.abs());
        let to_integer = |v: f64| (v - v.round()).abs();
        let k = Hyper::constant;
        match self {
            Tree::X => leaf(0),
            Tree::Y => leaf(1),
            Tree::Const(c) => k(*c),
            Tree::Unary(op, u) => {
                let u = u.eval(point, seeds, kink);
                let squared_plus = |u: Hyper| k(1.5) + u * u;
                use Unary::*;
                match op {
                    Sin => u.sin(),
                    Cos => u.cos(),
                    Tan => u.sin().tan(),
                    Cot => (k(0.8) + u.sin().scale(0.5)).cot(),
                    Asin => u.sin().scale(0.9).asin(),
                    Acos => u.sin().scale(0.9).acos(),
                    Atan => u.atan(),
                    Sinh => u.tanh().scale(2.0).sinh(),
                    Cosh => u.tanh().scale(2.0).cosh(),
                    Tanh => u.tanh(),
                    Asinh => u.asinh(),
                    Acosh => (k(1.5) + u.tanh() * u.tanh()).acosh(),
                    Atanh => u.tanh().scale(0.9).atanh(),
                    Exp => u.tanh().scale(2.0).exp(),
                    Ln => squared_plus(u).ln(),
                    Log | Log10 => squared_plus(u).ln().scale(1.0 / 10f64.ln()),
                    Log2 => squared_plus(u).ln().scale(1.0 / 2f64.ln()),
                    Sqrt => squared_plus(u).sqrt(),
                    Cbrt => squared_plus(u).cbrt(),
                    Degrees => u.tanh().scale(180.0 / std::f64::consts::PI),
                    Radians => u.scale(std::f64::consts::PI / 180.0),
                    Abs => {
                        near(kink, u.a);
                        if u.a >= 0.0 {
                            u
                        } else {
                            -u
                        }
                    }
                    Signum => {
                        near(kink, u.a);
                        u.step(u.a.signum())
                    }
                    Floor => {
                        near(kink, to_integer(u.a));
                        u.step(u.a.floor())
                    }
                    Ceil => {
                        near(kink, to_integer(u.a));
                        u.step(u.a.ceil())
                    }
                    Round => {
                        near(kink, to_integer(u.a - 0.5));
                        u.step(u.a.round())
                    }
                    Trunc => {
                        near(kink, to_integer(u.a));
                        u.step(u.a.trunc())
                    }
                    Neg => -u,
                    Square => u * u,
                    Cube => u * u * u,
                    CastDouble | TryCastDouble => u,
                    CastBigint => {
                        let v = u.tanh().a * 3.0;
                        near(kink, to_integer(v));
                        u.step(v.trunc())
                    }
                    StopGradient => k(u.a),
                }
            }
            Tree::Binary(op, a, b) => {
                let (a, b) = (a.eval(point, seeds, kink), b.eval(point, seeds, kink));
                use Binary::*;
                match op {
                    Add => a + b,
                    Sub => a - b,
                    Mul => a * b,
                    Div => a / (k(1.5) + b * b),
                    Rem => {
                        let divisor = k(2.5) + b * b;
                        let quotient = (a.a / divisor.a).trunc();
                        near(kink, to_integer(a.a / divisor.a) * divisor.a);
                        a - divisor * k(quotient)
                    }
                    Power | Pow => (k(1.5) + a * a).powf(b.tanh()),
                    LogBase => (k(1.5) + a * a).ln() / (k(2.5) + b * b).ln(),
                    Atan2 => a.atan2(k(1.5) + b * b),
                    Greatest | Least => {
                        near(kink, a.a - b.a);
                        let first = if *op == Greatest {
                            a.a >= b.a
                        } else {
                            a.a <= b.a
                        };
                        if first {
                            a
                        } else {
                            b
                        }
                    }
                    Coalesce | Nvl => a,
                    Nullif => {
                        near(kink, a.a - b.a);
                        a
                    }
                }
            }
            Tree::Nvl2(a, b, _) => {
                a.eval(point, seeds, kink);
                b.eval(point, seeds, kink)
            }
            Tree::Case(a, t, b, c) => {
                let a = a.eval(point, seeds, kink);
                near(kink, a.a - t);
                let (b, c) = (b.eval(point, seeds, kink), c.eval(point, seeds, kink));
                if a.a > *t {
                    b
                } else {
                    c
                }
            }
            Tree::Marker(m, f, v, t) => {
                // The marker's variable on ε₁, the outer seed on ε₂: ∂f/∂v is
                // the ε₁ part, and its derivative along the outer seed the ε₁ε₂ part.
                let inner = f.eval(point, [Some(*v), seeds[0]], kink);
                let derivative = Hyper {
                    a: inner.b,
                    b: inner.d,
                    c: 0.0,
                    d: 0.0,
                };
                match m {
                    Marker::Grad => derivative,
                    Marker::Jvp | Marker::Vjp => derivative * t.eval(point, [seeds[0], None], kink),
                }
            }
        }
    }

    /// The derivative by variable `v`, and the nearest jump or kink.
    fn derivative(&self, point: [f64; 2], v: usize) -> (f64, f64) {
        let mut kink = f64::INFINITY;
        let value = self.eval(point, [Some(v), None], &mut kink);
        (value.b, kink)
    }

    /// Trees one step simpler, for shrinking a failure.
    fn simpler(&self) -> Vec<Tree> {
        let mut out = vec![Tree::X, Tree::Y, Tree::Const(1.5)];
        match self {
            Tree::X | Tree::Y | Tree::Const(_) => return vec![],
            Tree::Unary(op, u) => {
                out.push(*u.clone());
                out.extend(
                    u.simpler()
                        .into_iter()
                        .map(|s| Tree::Unary(*op, Box::new(s))),
                );
            }
            Tree::Binary(op, a, b) => {
                out.extend([*a.clone(), *b.clone()]);
                out.extend(
                    a.simpler()
                        .into_iter()
                        .map(|s| Tree::Binary(*op, Box::new(s), b.clone())),
                );
                out.extend(
                    b.simpler()
                        .into_iter()
                        .map(|s| Tree::Binary(*op, a.clone(), Box::new(s))),
                );
            }
            Tree::Nvl2(a, b, c) | Tree::Case(a, _, b, c) => {
                out.extend([*a.clone(), *b.clone(), *c.clone()])
            }
            Tree::Marker(_, f, _, t) => out.extend([*f.clone(), *t.clone()]),
        }
        out
    }
}

/// Points in [-2, 2]² away from every jump and kink of `tree`, where
/// central differences and derivatives agree; `None` for a tree that is
/// rarely smooth (`abs(0.0)`, `greatest(x, x)`).
fn smooth_points(tree: &Tree, rng: &mut Rng, count: usize) -> Option<Vec<[f64; 2]>> {
    let mut points = vec![];
    for _ in 0..50 * count {
        let point = [rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0)];
        let far = (0..2).all(|v| tree.derivative(point, v).1 > 1e-3);
        if far {
            points.push(point);
            if points.len() == count {
                return Some(points);
            }
        }
    }
    None
}

/// Everything that differs from the references for one tree and variable.
async fn failures(
    ctx: &SessionContext,
    plain: &SessionContext,
    tree: &Tree,
    v: usize,
    points: &[[f64; 2]],
) -> Vec<String> {
    let f = tree.sql();
    let wrt = ["x", "y"][v];
    let expected: Vec<f64> = points.iter().map(|p| tree.derivative(*p, v).0).collect();
    let compare = |how: &str, got: Result<Vec<Option<f64>>, String>| -> Option<String> {
        let got = match got {
            Err(e) => return Some(format!("{how}: {e}")),
            Ok(got) => got,
        };
        got.iter()
            .zip(&expected)
            .zip(points)
            .find_map(|((g, e), p)| {
                let ok = g.is_some_and(|g| (g - e).abs() <= 1e-9 * (1.0 + e.abs()));
                (!ok).then(|| format!("{how}: at {p:?} got {g:?}, hyper-dual numbers give {e}"))
            })
    };
    let mut out = vec![];
    let marker = format!("SELECT grad({f}, {wrt}) FROM pts ORDER BY id");
    out.extend(compare("planner", evaluate(ctx, &marker).await));
    let bridged =
        rewrite_sql(&marker, &|_| Ok(None), &Default::default()).map_err(|e| e.to_string());
    let bridged = match bridged {
        Ok(rewritten) => evaluate(plain, &rewritten).await,
        Err(e) => Err(e),
    };
    out.extend(compare("bridge", bridged));
    let text = differentiate_sql(&f, wrt, Dialect::DataFusion).map_err(|e| e.to_string());
    let read_back = match text {
        Ok(text) => evaluate(plain, &format!("SELECT {text} FROM pts ORDER BY id")).await,
        Err(e) => Err(e),
    };
    out.extend(compare("derivative SQL read back", read_back));
    // Central differences move through stop_gradient (its value is its
    // argument's); only the hyper-dual numbers above hold it constant.
    if f.contains("stop_gradient") {
        return out;
    }
    match check_grad(ctx, &f, wrt, "SELECT * FROM pts").await {
        Ok(check) if check.checked == points.len() as i64 && check.worst_error <= 1e-5 => {}
        Ok(check) => out.push(format!("check_grad: {check:?}")),
        Err(e) => out.push(format!("check_grad: {e}")),
    }
    out
}

async fn evaluate(ctx: &SessionContext, sql: &str) -> Result<Vec<Option<f64>>, String> {
    let batches = match ctx.sql(sql).await {
        Ok(df) => df.collect().await.map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    let mut out = vec![];
    for batch in batches {
        let column = datafusion::arrow::compute::cast(
            batch.column(0),
            &datafusion::arrow::datatypes::DataType::Float64,
        )
        .map_err(|e| e.to_string())?;
        let column = column
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .unwrap();
        out.extend((0..column.len()).map(|i| {
            (!datafusion::arrow::array::Array::is_null(column, i)).then(|| column.value(i))
        }));
    }
    Ok(out)
}

fn set_points(ctx: &SessionContext, points: &[[f64; 2]]) {
    register(
        ctx,
        "pts",
        &[
            ("x", points.iter().map(|p| Some(p[0])).collect()),
            ("y", points.iter().map(|p| Some(p[1])).collect()),
        ],
    );
}

#[test]
fn the_trees_draw_on_every_registered_primitive() {
    let registered: BTreeSet<&str> = primitives().collect();
    let covered: BTreeSet<&str> = COVERED.iter().copied().collect();
    assert_eq!(
        registered, covered,
        "a primitive without a place in the fuzzed trees"
    );
}

#[tokio::test]
async fn random_trees_match_hyper_dual_numbers_and_central_differences() {
    let count: usize = std::env::var("AUTOGRAD_FUZZ_TREES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    let ctx = context();
    let plain = SessionContext::new();
    let mut rng = Rng::new(20_260_101);
    let mut n = 0;
    while n < count {
        let tree = Tree::random(&mut rng, 4, true);
        let Some(points) = smooth_points(&tree, &mut rng, 6) else {
            continue;
        };
        n += 1;
        set_points(&ctx, &points);
        set_points(&plain, &points);
        if std::env::var("AUTOGRAD_FUZZ_VERBOSE").is_ok() {
            eprintln!("tree {n}: {}", tree.sql());
        }
        for v in 0..2 {
            let found = failures(&ctx, &plain, &tree, v, &points).await;
            if found.is_empty() {
                continue;
            }
            // The smallest tree that still fails, at its own smooth points.
            let mut smallest = tree.clone();
            'shrink: loop {
                for candidate in smallest.simpler() {
                    let Some(points) = smooth_points(&candidate, &mut rng, 6) else {
                        continue;
                    };
                    set_points(&ctx, &points);
                    set_points(&plain, &points);
                    if !failures(&ctx, &plain, &candidate, v, &points)
                        .await
                        .is_empty()
                    {
                        smallest = candidate;
                        continue 'shrink;
                    }
                }
                break;
            }
            let points = smooth_points(&smallest, &mut rng, 6).expect("smooth points were found");
            set_points(&ctx, &points);
            set_points(&plain, &points);
            let again = failures(&ctx, &plain, &smallest, v, &points).await;
            panic!(
                "tree {n}: d/d{} {}\n{}\nsmallest failing: d/d{} {}\n{}",
                ["x", "y"][v],
                tree.sql(),
                found.join("\n"),
                ["x", "y"][v],
                smallest.sql(),
                again.join("\n")
            );
        }
    }
}

#[tokio::test]
async fn check_grad_names_the_worst_row() {
    let ctx = context();
    // floor jumps at 1: its derivative is 0 everywhere, but the central
    // difference straddling the jump is about 1 / (2·step).
    let relation = "SELECT * FROM (VALUES (0.25), (0.9999999), (-1.5)) AS t(x)";
    let check = check_grad(&ctx, "floor(x) + x * x", "x", relation)
        .await
        .unwrap();
    assert_eq!((check.rows, check.checked), (3, 3));
    assert_eq!(check.at, 0.9999999);
    assert!((check.grad - 2.0 * 0.9999999).abs() < 1e-12, "{check:?}");
    assert!(
        check.worst_error > 0.9 && check.difference > 1e4,
        "{check:?}"
    );

    let smooth = "SELECT * FROM (VALUES (0.25), (-1.5)) AS t(x)";
    let check = check_grad(&ctx, "floor(x) + x * x", "x", smooth)
        .await
        .unwrap();
    assert!(check.worst_error < 1e-8, "{check:?}");

    let empty = "SELECT * FROM (VALUES (0.25)) AS t(x) WHERE x > 1";
    let error = check_grad(&ctx, "x", "x", empty)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("the relation has no rows"), "{error}");
    let error = check_grad(&ctx, "x", "2 * x", smooth)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("must be a column name"), "{error}");
}
