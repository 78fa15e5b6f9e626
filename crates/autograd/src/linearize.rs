//! Forward-mode differentiation of DataFusion expressions.
//!
//! [`linearize`] walks an [`Expr`] once, bottom-up, and pairs every node with
//! its [`Tangent`]: columns take their seed, everything that does not depend
//! on a seed is symbolically zero, and each primitive's tangent comes from its
//! rule in [`crate::rules`]. Rules reuse the primal subexpressions they were
//! given, so the output is a tree whose repeated parts are *identical*
//! subexpressions, which DataFusion's common-subexpression elimination
//! evaluates once per row.

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{not_impl_err, Column, DFSchema, Result, TableReference};
use datafusion_expr::expr::{Case, Cast, TryCast};
use datafusion_expr::{cast, lit, Expr, ExprSchemable, Operator};

use crate::rules::{self, Call};
use crate::tangent::{choice, Tangent};
use crate::udf::expand_markers;

/// `∂expr/∂wrt`: the derivative of `expr` with respect to the column `wrt`.
///
/// Other columns are held constant. Nested `grad`/`jvp`/`vjp` calls inside
/// `expr` are differentiated first, so markers compose into higher orders.
///
/// ```
/// use datafusion_autograd::differentiate;
/// use datafusion_common::Column;
/// use datafusion_expr::{col, lit};
///
/// let d = differentiate(&(col("x") * col("x") + col("y")), &Column::from_name("x")).unwrap();
/// assert_eq!(d, col("x") + col("x"));
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
/// assert_eq!(d, col("y") * col("dx") + col("x") * col("dy"));
/// ```
pub fn linearize(expr: &Expr, seeds: &[(Column, Expr)]) -> Result<Expr> {
    Ok(Linearizer::new(seeds, None).tangent_of(expr)?.into_expr())
}

/// Differentiates with a fixed set of seeds. With a schema, integer inputs are
/// promoted to DOUBLE first (see [`as_real`]); without one, every column is
/// taken to be real already.
pub(crate) struct Linearizer<'a> {
    seeds: &'a [(Column, Expr)],
    schema: Option<&'a DFSchema>,
}

impl<'a> Linearizer<'a> {
    pub(crate) fn new(seeds: &'a [(Column, Expr)], schema: Option<&'a DFSchema>) -> Self {
        Self { seeds, schema }
    }

    /// The tangent of `expr`, after its nested markers are expanded.
    pub(crate) fn tangent_of(&self, expr: &Expr) -> Result<Tangent> {
        let mut expr = expand_markers(expr.clone(), self.schema)?
            .unalias_nested()
            .data;
        if let Some(schema) = self.schema {
            expr = as_real(expr, schema)?;
        }
        self.tangent(&expr)
    }

    fn tangent(&self, expr: &Expr) -> Result<Tangent> {
        match expr {
            Expr::Column(c) | Expr::OuterReferenceColumn(_, c) => Ok(self.seed(c)),
            Expr::Literal(..) | Expr::ScalarVariable(..) | Expr::Placeholder(_) => {
                Ok(Tangent::Zero)
            }
            Expr::Alias(alias) => self.tangent(&alias.expr),
            Expr::Negative(u) => self.apply("negative", &[u.as_ref().clone()], expr),
            Expr::BinaryExpr(b) if !is_truth_valued(b.op) => {
                let args = [b.left.as_ref().clone(), b.right.as_ref().clone()];
                self.apply(&b.op.to_string(), &args, expr)
            }
            Expr::ScalarFunction(f) => self.apply(f.func.name(), &f.args, expr),
            Expr::Cast(Cast { expr: u, field }) | Expr::TryCast(TryCast { expr: u, field }) => {
                self.cast(u, field.data_type())
            }
            Expr::Case(case) => self.case(case),
            // Truth values are piecewise constant in their inputs.
            e if is_condition(e) => Ok(Tangent::Zero),
            Expr::ScalarSubquery(subquery) => {
                let correlated = subquery
                    .outer_ref_columns
                    .iter()
                    .any(|e| self.mentions_seed(e));
                if correlated {
                    return not_impl_err!(
                        "cannot differentiate through a scalar subquery that refers to the \
                         column being differentiated; move the derivative inside the subquery"
                    );
                }
                Ok(Tangent::Zero)
            }
            other if self.mentions_seed(other) => not_impl_err!(
                "cannot differentiate through {} `{other}`; differentiate its argument \
                 instead (for example SUM(grad(f, x)) rather than grad(SUM(f), x))",
                other.variant_name()
            ),
            _ => Ok(Tangent::Zero),
        }
    }

    /// Tangent of a primitive call: zero when no argument depends on a seed
    /// (whatever the function), else the primitive's rule.
    fn apply(&self, name: &str, args: &[Expr], out: &Expr) -> Result<Tangent> {
        let tangents = args
            .iter()
            .map(|arg| self.tangent(arg))
            .collect::<Result<Vec<_>>>()?;
        if tangents.iter().all(Tangent::is_zero) {
            return Ok(Tangent::Zero);
        }
        let Some(rule) = rules::rule(name) else {
            return not_impl_err!("no derivative rule for '{name}' (in `{out}`)");
        };
        rule(&Call::new(name, args, &tangents, out))
    }

    fn seed(&self, column: &Column) -> Tangent {
        self.seeds
            .iter()
            .find(|(seeded, _)| same_column(seeded, column))
            .map_or(Tangent::Zero, |(_, tangent)| Tangent::new(tangent.clone()))
    }

    fn mentions_seed(&self, expr: &Expr) -> bool {
        let mut found = false;
        expr.apply(|e| {
            if let Expr::Column(c) | Expr::OuterReferenceColumn(_, c) = e {
                found |= !self.seed(c).is_zero();
            }
            Ok(if found {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
        .expect("the visitor never fails");
        found
    }

    /// Numeric casts pass the tangent through, except a cast that truncates a
    /// real to an integer: that is a step function, flat almost everywhere.
    fn cast(&self, u: &Expr, to: &DataType) -> Result<Tangent> {
        let du = self.tangent(u)?;
        if du.is_zero() || to.is_integer() {
            return Ok(Tangent::Zero);
        }
        if to.is_numeric() {
            return Ok(du);
        }
        not_impl_err!("cannot differentiate through a cast to {to} (in `{u}`)")
    }

    /// `CASE` keeps its conditions and differentiates every result branch.
    fn case(&self, case: &Case) -> Result<Tangent> {
        let thens = case
            .when_then_expr
            .iter()
            .map(|(_, then)| self.tangent(then))
            .collect::<Result<Vec<_>>>()?;
        let otherwise = case
            .else_expr
            .as_deref()
            .map(|e| self.tangent(e))
            .transpose()?;
        let branches = case
            .when_then_expr
            .iter()
            .map(|(when, _)| when.as_ref().clone())
            .zip(thens);
        Ok(choice(case.expr.clone(), branches, otherwise))
    }
}

/// `expr` over the reals: integer columns become DOUBLE and casts between
/// integer types disappear, so `i / j` differentiates as real division and the
/// derivative never truncates. This is the function whose derivative `grad`
/// of integer columns returns.
fn as_real(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let is_integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
    expr.transform_down(|e| match &e {
        Expr::Cast(Cast { expr: inner, field }) | Expr::TryCast(TryCast { expr: inner, field })
            if field.data_type().is_integer() && is_integer(inner) =>
        {
            Ok(Transformed::yes(inner.as_ref().clone()))
        }
        Expr::Column(_) | Expr::OuterReferenceColumn(..) if is_integer(&e) => Ok(Transformed::new(
            cast(e, DataType::Float64),
            true,
            TreeNodeRecursion::Jump,
        )),
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Whether `expr` yields a truth value.
pub(crate) fn is_condition(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryExpr(b) => is_truth_valued(b.op),
        Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Between(_)
        | Expr::Like(_)
        | Expr::SimilarTo(_)
        | Expr::InList(_)
        | Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::SetComparison(_) => true,
        _ => false,
    }
}

/// Comparisons and connectives yield truth values, which are piecewise
/// constant in their inputs.
pub(crate) fn is_truth_valued(op: Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Eq | NotEq
            | Lt
            | LtEq
            | Gt
            | GtEq
            | IsDistinctFrom
            | IsNotDistinctFrom
            | And
            | Or
            | RegexMatch
            | RegexIMatch
            | RegexNotMatch
            | RegexNotIMatch
            | LikeMatch
            | ILikeMatch
            | NotLikeMatch
            | NotILikeMatch
    )
}

/// Columns match by name, and by relation where both name one.
fn same_column(a: &Column, b: &Column) -> bool {
    a.name == b.name
        && match (&a.relation, &b.relation) {
            (Some(x), Some(y)) => x == y || (is_bare(x) || is_bare(y)) && x.table() == y.table(),
            _ => true,
        }
}

fn is_bare(r: &TableReference) -> bool {
    matches!(r, TableReference::Bare { .. })
}
