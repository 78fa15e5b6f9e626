//! Forward-mode differentiation of DataFusion expressions.
//!
//! [`linearize`] walks an [`Expr`] once, bottom-up, and pairs every node with
//! its [`Tangent`]: columns take their seed, everything that does not depend
//! on a seed is symbolically zero, and each primitive's tangent comes from its
//! rule in [`crate::forward::rules`]. Rules reuse the primal subexpressions they were
//! given, so the output is a tree whose repeated parts are *identical*
//! subexpressions, which DataFusion's common-subexpression elimination
//! evaluates once per row.

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, Result, TableReference};
use datafusion_expr::expr::{Case, Cast, TryCast};
use datafusion_expr::Expr;

use crate::error::fail;
use crate::forward::condition::{is_condition, is_truth_valued};
use crate::forward::rules::{self, Call};
use crate::forward::tangent::{choice, Tangent};

/// Forward-mode differentiation along fixed seeds. Markers must have been
/// expanded and columns read as real numbers (see [`crate::forward::marker`]).
pub(crate) struct Linearizer<'a> {
    seeds: &'a [(Column, Expr)],
    max_nodes: usize,
    /// Whether an uncorrelated scalar subquery is a constant (in a relation
    /// the reverse pass has already taken apart) or must have been wrapped by
    /// the planner (in a marker).
    constant_subqueries: bool,
}

impl<'a> Linearizer<'a> {
    /// Differentiation along `seeds` of derivatives no larger than `max_nodes`.
    pub(crate) fn new(seeds: &'a [(Column, Expr)], max_nodes: usize) -> Self {
        Self {
            seeds,
            max_nodes,
            constant_subqueries: false,
        }
    }

    /// The same, reading an uncorrelated scalar subquery as a constant.
    pub(crate) fn with_constant_subqueries(self) -> Self {
        Self {
            constant_subqueries: true,
            ..self
        }
    }

    /// The tangent of `expr`: `Σ ∂expr/∂column · tangent` over the seeds.
    /// An error as soon as a tangent grows past the size limit.
    #[recursive::recursive]
    pub(crate) fn tangent(&self, expr: &Expr) -> Result<Tangent> {
        let tangent = self.tangent_unchecked(expr)?;
        if tangent.nodes() > self.max_nodes {
            return fail!(
                LimitExceeded,
                "the derivative grows to {} expression nodes, past the limit of {} \
                 (autograd.max_derivative_nodes), at `{}`",
                tangent.nodes(),
                self.max_nodes,
                abbreviated(expr)
            );
        }
        Ok(tangent)
    }

    fn tangent_unchecked(&self, expr: &Expr) -> Result<Tangent> {
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
                    return fail!(
                        UnsupportedOperation,
                        "cannot differentiate through a scalar subquery that refers to the \
                         column being differentiated; move the derivative inside the subquery"
                    );
                }
                if self.constant_subqueries {
                    return Ok(Tangent::Zero);
                }
                // Whether the subquery reads the column's table is the planner's
                // to say (it wraps every subquery of a marker: a whole query's
                // gradient, or a constant); a bare one was not looked at.
                fail!(
                    UnsupportedOperation,
                    "a scalar subquery inside grad/jvp/vjp (`{expr}`) is differentiated by the \
                     analyzer rule datafusion_autograd::register adds to a session; register \
                     the markers with it, or wrap a constant subquery in stop_gradient(…)"
                )
            }
            other if self.mentions_seed(other) => fail!(
                UnsupportedOperation,
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
        let read = rules::differentiated_arguments(name);
        let tangents = args
            .iter()
            .enumerate()
            .map(|(k, arg)| match read {
                Some(read) if !read.contains(&k) => Ok(Tangent::Zero),
                _ => self.tangent(arg),
            })
            .collect::<Result<Vec<_>>>()?;
        if tangents.iter().all(Tangent::is_zero) {
            return Ok(Tangent::Zero);
        }
        let Some(rule) = rules::rule(name) else {
            return fail!(
                UnsupportedOperation,
                "no derivative rule for '{name}' (in `{out}`)"
            );
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
        fail!(
            UnsupportedOperation,
            "cannot differentiate through a cast to {to} (in `{u}`)"
        )
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

/// `expr`'s outermost operation, for an error message: the expression itself
/// may be too large, or too deep, to print whole.
fn abbreviated(expr: &Expr) -> String {
    match expr {
        Expr::ScalarFunction(f) => format!("{}(…)", f.func.name()),
        Expr::BinaryExpr(b) => format!("… {} …", b.op),
        Expr::Negative(_) => "-(…)".to_string(),
        other => other.variant_name().to_string(),
    }
}
