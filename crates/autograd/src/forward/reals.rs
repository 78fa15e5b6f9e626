//! Reading an expression over the real numbers.
//!
//! A derivative is a statement about functions of real numbers, so
//! `grad(i / j, j)` over integer columns means the derivative of real
//! division, `-i / j²`, not of integer division (which is flat). Before an
//! expression is differentiated, the columns it computes with are read as
//! DOUBLE. Columns that only feed a condition, or a function without a
//! derivative rule, keep their type: `CASE WHEN i / 2 = 1 …` chooses the same
//! branch as the query it came from.

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{DFSchema, Result};
use datafusion_expr::expr::{Cast, TryCast};
use datafusion_expr::{cast, Expr, ExprSchemable};

use crate::forward::condition::is_condition;
use crate::forward::rules;

/// What is known about the types of the columns an expression reads.
#[derive(Clone, Copy, Debug)]
pub enum ColumnTypes<'a> {
    /// Every column already holds real numbers; the expression is
    /// differentiated as written.
    Real,
    /// The input schema: integer columns are read as DOUBLE and casts from
    /// one integer type to another disappear.
    Schema(&'a DFSchema),
    /// Nothing: every column in arithmetic position is read as DOUBLE, and the
    /// host that plans the result coerces it against the real types.
    Unknown,
}

/// `expr` with the columns it computes with read as DOUBLE, as `types` allows.
pub(crate) fn as_real(expr: Expr, types: ColumnTypes) -> Result<Expr> {
    match types {
        ColumnTypes::Real => Ok(expr),
        ColumnTypes::Schema(_) | ColumnTypes::Unknown => real(expr, types),
    }
}

/// `expr`, which stands in arithmetic position, read over the reals.
#[recursive::recursive]
fn real(expr: Expr, types: ColumnTypes) -> Result<Expr> {
    let is_integer = |e: &Expr| match types {
        ColumnTypes::Schema(schema) => e.get_type(schema).is_ok_and(|t| t.is_integer()),
        ColumnTypes::Real | ColumnTypes::Unknown => false,
    };
    match expr {
        Expr::Column(_) | Expr::OuterReferenceColumn(..) => {
            let unknown = matches!(types, ColumnTypes::Unknown);
            Ok(if unknown || is_integer(&expr) {
                cast(expr, DataType::Float64)
            } else {
                expr
            })
        }
        Expr::Cast(Cast { expr: inner, field }) | Expr::TryCast(TryCast { expr: inner, field })
            if field.data_type().is_integer() && is_integer(&inner) =>
        {
            real(*inner, types)
        }
        Expr::Case(mut case) => {
            for (_, then) in &mut case.when_then_expr {
                **then = real(then.as_ref().clone(), types)?;
            }
            if let Some(otherwise) = &mut case.else_expr {
                **otherwise = real(otherwise.as_ref().clone(), types)?;
            }
            Ok(Expr::Case(case))
        }
        e if computes(&e) => Ok(e
            .map_children(|child| real(child, types).map(Transformed::yes))?
            .data),
        e => Ok(e),
    }
}

/// Whether the operands of `expr` stand in arithmetic position too.
fn computes(expr: &Expr) -> bool {
    match expr {
        e if is_condition(e) => false,
        Expr::BinaryExpr(_) | Expr::Negative(_) | Expr::Alias(_) => true,
        Expr::ScalarFunction(f) => rules::rule(f.func.name()).is_some(),
        Expr::Cast(c) => c.field.data_type().is_numeric(),
        Expr::TryCast(c) => c.field.data_type().is_numeric(),
        _ => false,
    }
}
