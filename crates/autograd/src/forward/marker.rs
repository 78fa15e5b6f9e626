//! What `grad`, `jvp` and `vjp` mean: each marker call stands for a
//! derivative, formed here by the forward-mode engine and typed for the plan
//! it replaces the call in.

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{plan_err, Column, DFSchema, Result};
use datafusion_expr::{cast, lit, Expr, ExprSchemable};
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;

use crate::error::fail;
use crate::forward::condition::is_condition;
use crate::forward::linearize::Linearizer;
use crate::forward::reals::{as_real, ColumnTypes};
use crate::forward::tangent::Tangent;
use crate::options::AutogradOptions;
use crate::stack::with_room_for;

/// One line per marker, the single source of the Rust docs, the Python
/// docstrings and the markers' `documentation()`.
#[macro_export]
macro_rules! marker_summary {
    (grad) => {
        "The derivative ∂expression/∂column, at every row."
    };
    (jvp) => {
        "The forward-mode product ∂expression/∂column · tangent, at every row."
    };
    (vjp) => {
        "The reverse-mode product cotangent · ∂expression/∂column, at every row."
    };
}

/// Which derivative a marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Derivative {
    #[doc = marker_summary!(grad)]
    Grad,
    #[doc = marker_summary!(jvp)]
    Jvp,
    #[doc = marker_summary!(vjp)]
    Vjp,
}

impl Derivative {
    pub const ALL: [Derivative; 3] = [Derivative::Grad, Derivative::Jvp, Derivative::Vjp];

    /// The SQL function name.
    pub fn name(self) -> &'static str {
        match self {
            Derivative::Grad => "grad",
            Derivative::Jvp => "jvp",
            Derivative::Vjp => "vjp",
        }
    }

    /// The marker called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// What the marker computes, in one line.
    pub fn summary(self) -> &'static str {
        match self {
            Derivative::Grad => marker_summary!(grad),
            Derivative::Jvp => marker_summary!(jvp),
            Derivative::Vjp => marker_summary!(vjp),
        }
    }

    /// The call with its arguments named.
    pub fn usage(self) -> &'static str {
        match self {
            Derivative::Grad => "grad(expression, column)",
            Derivative::Jvp => "jvp(expression, column, tangent)",
            Derivative::Vjp => "vjp(expression, column, cotangent)",
        }
    }

    /// The arguments' names and meanings, in order.
    pub fn arguments(self) -> &'static [(&'static str, &'static str)] {
        const EXPRESSION: (&str, &str) = (
            "expression",
            "The numeric expression to differentiate; it may itself contain markers.",
        );
        const COLUMN: (&str, &str) = (
            "column",
            "The column to differentiate by; every other column is held constant.",
        );
        match self {
            Derivative::Grad => &[EXPRESSION, COLUMN],
            Derivative::Jvp => &[
                EXPRESSION,
                COLUMN,
                ("tangent", "The direction: any numeric expression."),
            ],
            Derivative::Vjp => &[
                EXPRESSION,
                COLUMN,
                ("cotangent", "The weight: any numeric expression."),
            ],
        }
    }

    /// A query that shows the marker at work.
    pub fn example(self) -> &'static str {
        match self {
            Derivative::Grad => "SELECT x, grad(sin(x) * x, x) AS slope FROM samples",
            Derivative::Jvp => "SELECT jvp(exp(a * x), a, da) FROM samples",
            Derivative::Vjp => "SELECT SUM(vjp(power(w * x - y, 2), w, 0.5)) FROM samples",
        }
    }

    fn arity(self) -> usize {
        self.arguments().len()
    }

    /// An error unless the marker is called with `n` arguments.
    pub fn check_arity(self, n: usize) -> Result<()> {
        if n != self.arity() {
            return plan_err!("{} takes {} arguments, got {n}", self.usage(), self.arity());
        }
        Ok(())
    }

    /// The derivative this marker stands for, as an expression over the
    /// marker's own arguments. Markers inside the arguments are expanded
    /// first. With a schema, the result is type-coerced and DOUBLE, ready to
    /// replace the call in a plan.
    pub fn expand(
        self,
        args: &[Expr],
        types: ColumnTypes,
        options: &AutogradOptions,
    ) -> Result<Expr> {
        let mut deepest = 0;
        for arg in args {
            deepest = deepest.max(options.check_depth(arg)?);
        }
        with_room_for(deepest, || self.expand_here(args, types, options))
    }

    fn expand_here(
        self,
        args: &[Expr],
        types: ColumnTypes,
        options: &AutogradOptions,
    ) -> Result<Expr> {
        self.check_arity(args.len())?;
        let Some(wrt) = column_of(&args[1]) else {
            return fail!(
                UnknownParameter,
                "the second argument of {} must be a column reference, found `{}`",
                self.usage(),
                args[1]
            );
        };
        let args = args
            .iter()
            .map(|a| expand_markers(a.clone(), types, options))
            .collect::<Result<Vec<_>>>()?;
        let (tangent, cotangent) = match self {
            Derivative::Grad => (lit(1.0_f64), None),
            Derivative::Jvp => (args[2].clone(), None),
            Derivative::Vjp => (lit(1.0_f64), Some(args[2].clone())),
        };
        let derivative = directional(&args[0], wrt, tangent, types, options)?;
        let derivative = match cotangent {
            Some(cotangent) => derivative.times(cotangent),
            None => derivative,
        };
        typed(derivative.into_expr(), &args, types)
    }
}

/// `cotangent · ∂expr/∂wrt` for a plan whose input has `schema`, typed
/// DOUBLE; `None` where it is zero whatever the rows hold.
pub(crate) fn pullback(
    expr: &Expr,
    wrt: &Column,
    cotangent: Expr,
    schema: &DFSchema,
    options: &AutogradOptions,
) -> Result<Option<Expr>> {
    let types = ColumnTypes::Schema(schema);
    let real = as_real(expr.clone().unalias_nested().data, types)?;
    let seeds = [(wrt.clone(), lit(1.0_f64))];
    // The relation's subqueries that read a parameter were joined to it
    // before; the rest are constants.
    let derivative = Linearizer::new(&seeds, options.max_derivative_nodes)
        .with_constant_subqueries()
        .tangent(&real)?;
    if derivative.is_zero() {
        return Ok(None);
    }
    let product = derivative.times(cotangent.clone()).into_expr();
    typed(product, &[expr.clone(), cotangent], types).map(Some)
}

/// `Σⱼ ∂expr/∂columnⱼ · tangentⱼ` over `seeds`, for a plan whose input has
/// `schema`, typed DOUBLE; `None` where it is zero whatever the rows hold.
/// Forward mode over relations: the tangent a projected column carries.
pub(crate) fn push_forward(
    expr: &Expr,
    seeds: &[(Column, Expr)],
    schema: &DFSchema,
    options: &AutogradOptions,
) -> Result<Option<Expr>> {
    let types = ColumnTypes::Schema(schema);
    let real = as_real(expr.clone().unalias_nested().data, types)?;
    let tangent = Linearizer::new(seeds, options.max_derivative_nodes)
        .with_constant_subqueries()
        .tangent(&real)?;
    if tangent.is_zero() {
        return Ok(None);
    }
    let inputs: Vec<Expr> = std::iter::once(expr.clone())
        .chain(seeds.iter().map(|(_, t)| t.clone()))
        .collect();
    typed(tangent.into_expr(), &inputs, types).map(Some)
}

/// `∂expr/∂wrt · tangent`, with `expr` free of markers.
fn directional(
    expr: &Expr,
    wrt: Column,
    tangent: Expr,
    types: ColumnTypes,
    options: &AutogradOptions,
) -> Result<Tangent> {
    let expr = as_real(expr.clone().unalias_nested().data, types)?;
    Linearizer::new(&[(wrt, tangent)], options.max_derivative_nodes).tangent(&expr)
}

/// `derivative`, computed from `inputs`, typed for the plan it goes into.
fn typed(derivative: Expr, inputs: &[Expr], types: ColumnTypes) -> Result<Expr> {
    match types {
        // The common case needs no second typing pass over the derivative,
        // which is far larger than its inputs.
        ColumnTypes::Schema(schema) if inputs.iter().all(|a| computes_in_double(a, schema)) => {
            Ok(derivative)
        }
        ColumnTypes::Schema(schema) => as_double(derivative, schema),
        ColumnTypes::Real | ColumnTypes::Unknown => Ok(derivative),
    }
}

/// Replaces every marker call inside `expr` by its derivative, innermost first.
pub fn expand_markers(expr: Expr, types: ColumnTypes, options: &AutogradOptions) -> Result<Expr> {
    expr.transform_up(|e| match &e {
        Expr::ScalarFunction(f) => match Derivative::from_name(f.func.name()) {
            Some(d) => Ok(Transformed::yes(d.expand(&f.args, types, options)?)),
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// `∂expr/∂wrt`: the derivative of `expr` with respect to the column `wrt`.
///
/// Other columns are held constant, and every column is taken to hold real
/// numbers as written. Nested `grad`/`jvp`/`vjp` calls inside `expr` are
/// differentiated first, so markers compose into higher orders.
///
/// ```
/// use datafusion_autograd::differentiate;
/// use datafusion_common::Column;
/// use datafusion_expr::{col, lit};
///
/// let d = differentiate(&(col("x") * col("x") + col("y")), &Column::from_name("x")).unwrap();
/// assert_eq!(d, col("x") * lit(2.0));
/// ```
pub fn differentiate(expr: &Expr, wrt: &Column) -> Result<Expr> {
    linearize(expr, &[(wrt.clone(), lit(1.0_f64))])
}

/// The forward-mode derivative of `expr` along the tangent direction `seeds`:
/// `Σ ∂expr/∂column · tangent` over the seeded `(column, tangent)` pairs.
///
/// A one-hot seed (`tangent = 1`) gives `grad`; an arbitrary tangent
/// expression gives `jvp`.
///
/// ```
/// use datafusion_autograd::linearize;
/// use datafusion_common::Column;
/// use datafusion_expr::{col, lit};
///
/// let seeds = [(Column::from_name("x"), col("dx")), (Column::from_name("y"), col("dy"))];
/// let d = linearize(&(col("x") * col("y")), &seeds).unwrap();
/// assert_eq!(d, col("dx") * col("y") + col("dy") * col("x"));
/// ```
pub fn linearize(expr: &Expr, seeds: &[(Column, Expr)]) -> Result<Expr> {
    let options = AutogradOptions::default();
    let depth = options.check_depth(expr)?;
    with_room_for(depth, || {
        let expr = expand_markers(expr.clone(), ColumnTypes::Real, &options)?
            .unalias_nested()
            .data;
        let linearizer =
            Linearizer::new(seeds, options.max_derivative_nodes).with_constant_subqueries();
        Ok(linearizer.tangent(&expr)?.into_expr())
    })
}

/// The column a `wrt` argument names, looking through casts the planner added.
fn column_of(expr: &Expr) -> Option<Column> {
    match expr {
        Expr::Column(c) | Expr::OuterReferenceColumn(_, c) => Some(c.clone()),
        Expr::Cast(c) => column_of(&c.expr),
        Expr::TryCast(c) => column_of(&c.expr),
        Expr::Alias(a) => column_of(&a.expr),
        _ => None,
    }
}

/// Whether every number `expr` computes is a DOUBLE (conditions aside). A
/// derivative built from such pieces and DOUBLE literals is DOUBLE throughout.
fn computes_in_double(expr: &Expr, schema: &DFSchema) -> bool {
    let mut double = true;
    let _ = expr.apply(|e| {
        if is_condition(e) {
            return Ok(TreeNodeRecursion::Jump);
        }
        double = matches!(e.get_type(schema), Ok(DataType::Float64));
        Ok(if double {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    double
}

/// Types `expr` the way the analyzer would have, then makes it DOUBLE, the
/// markers' declared return type.
fn as_double(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let expr = expr.rewrite(&mut TypeCoercionRewriter::new(schema))?.data;
    Ok(match expr.get_type(schema)? {
        DataType::Float64 => expr,
        _ => cast(expr, DataType::Float64),
    })
}
