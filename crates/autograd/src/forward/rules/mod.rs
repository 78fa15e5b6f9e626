//! The table of calculus: one forward-mode (JVP) rule per primitive.
//!
//! A rule sees one call site — the primal arguments, their tangents and the
//! primal output — and returns the output's tangent, in the spirit of JAX's
//! `defjvp`. Operators are primitives too, keyed by their SQL symbol. To teach
//! the engine a new function, write its rule in the family file and add one
//! line to [`RULES`].
//!
//! The driver never calls a rule when every argument tangent is zero, so
//! constants (`pi()`, `random()`, any function of other columns) need none.

mod arithmetic;
mod exp_log;
mod given;
mod hyperbolic;
mod nulls;
mod piecewise;
mod power;
mod trig;

use std::collections::HashMap;
use std::sync::LazyLock;

use datafusion_common::{plan_err, Result};
use datafusion_expr::Expr;

use crate::forward::tangent::Tangent;

/// A forward-mode rule: the tangent of a call's output from the call site.
pub type JvpRule = fn(&Call) -> Result<Tangent>;

/// Every differentiable primitive and its rule.
static RULES: &[(&str, JvpRule)] = &[
    // arithmetic operators
    ("+", arithmetic::add),
    ("-", arithmetic::sub),
    ("*", arithmetic::mul),
    ("/", arithmetic::div),
    ("%", arithmetic::rem),
    ("negative", arithmetic::negative),
    // powers and roots
    ("power", power::power),
    ("pow", power::power),
    ("sqrt", power::sqrt),
    ("cbrt", power::cbrt),
    // exponentials and logarithms
    ("exp", exp_log::exp),
    ("ln", exp_log::ln),
    ("log", exp_log::log),
    ("log2", exp_log::log2),
    ("log10", exp_log::log10),
    // trigonometry and angle units
    ("sin", trig::sin),
    ("cos", trig::cos),
    ("tan", trig::tan),
    ("cot", trig::cot),
    ("asin", trig::asin),
    ("acos", trig::acos),
    ("atan", trig::atan),
    ("atan2", trig::atan2),
    ("degrees", trig::degrees),
    ("radians", trig::radians),
    // hyperbolic functions
    ("sinh", hyperbolic::sinh),
    ("cosh", hyperbolic::cosh),
    ("tanh", hyperbolic::tanh),
    ("asinh", hyperbolic::asinh),
    ("acosh", hyperbolic::acosh),
    ("atanh", hyperbolic::atanh),
    // piecewise functions
    ("abs", piecewise::abs),
    ("signum", piecewise::constant),
    ("floor", piecewise::constant),
    ("ceil", piecewise::constant),
    ("round", piecewise::constant),
    ("trunc", piecewise::constant),
    ("greatest", piecewise::greatest),
    ("least", piecewise::least),
    // NULL handling
    ("coalesce", nulls::coalesce),
    ("nvl", nulls::coalesce),
    ("nullif", nulls::nullif),
    ("nvl2", nulls::nvl2),
    // derivatives given, not derived
    ("stop_gradient", given::stop_gradient),
    (WITH_DERIVATIVE, given::with_derivative),
];

/// The name of the function that carries a value with its derivative (see
/// [`given::with_derivative`]); the planner writes it, users do not.
pub const WITH_DERIVATIVE: &str = "__autograd_with_derivative";

static REGISTRY: LazyLock<HashMap<&'static str, JvpRule>> =
    LazyLock::new(|| RULES.iter().copied().collect());

/// The arguments whose tangents the rule of `name` reads, where it reads
/// fewer than all: the driver differentiates only those (what a rule ignores
/// may not be differentiable at all, a subquery say).
pub fn differentiated_arguments(name: &str) -> Option<&'static [usize]> {
    match name {
        "stop_gradient" => Some(&[]),
        WITH_DERIVATIVE => Some(&[2]),
        _ => None,
    }
}

/// The rule for the primitive called `name`, if there is one.
pub fn rule(name: &str) -> Option<JvpRule> {
    REGISTRY.get(name).copied()
}

/// The names of every primitive with a derivative rule, operators included
/// (not the planner's own [`WITH_DERIVATIVE`]).
pub fn primitives() -> impl Iterator<Item = &'static str> {
    RULES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != WITH_DERIVATIVE)
}

/// One call site of a primitive, as a rule sees it.
pub struct Call<'a> {
    name: &'a str,
    args: &'a [Expr],
    tangents: &'a [Tangent],
    out: &'a Expr,
}

impl<'a> Call<'a> {
    /// `args` and `tangents` are parallel; `out` is the call itself.
    pub fn new(name: &'a str, args: &'a [Expr], tangents: &'a [Tangent], out: &'a Expr) -> Self {
        debug_assert_eq!(args.len(), tangents.len());
        Self {
            name,
            args,
            tangents,
            out,
        }
    }

    /// The `i`-th primal argument.
    pub fn x(&self, i: usize) -> Result<Expr> {
        self.args
            .get(i)
            .cloned()
            .map_or_else(|| self.arity_error(i), Ok)
    }

    /// The tangent of the `i`-th argument.
    pub fn dx(&self, i: usize) -> Result<&'a Tangent> {
        self.tangents.get(i).map_or_else(|| self.arity_error(i), Ok)
    }

    /// The primal output, reused so the common subexpression is evaluated once.
    pub fn out(&self) -> Expr {
        self.out.clone()
    }

    pub fn arity(&self) -> usize {
        self.args.len()
    }

    pub fn args(&self) -> &'a [Expr] {
        self.args
    }

    pub fn tangents(&self) -> &'a [Tangent] {
        self.tangents
    }

    fn arity_error<T>(&self, i: usize) -> Result<T> {
        plan_err!(
            "{} was called with {} argument(s); its derivative needs argument {}",
            self.name,
            self.args.len(),
            i + 1
        )
    }
}

/// `e · e`: squares are written as products so the base is shared, not recomputed.
fn square(e: Expr) -> Expr {
    e.clone() * e
}
