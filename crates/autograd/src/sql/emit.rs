//! SQL text out: the one place this crate prints SQL.
//!
//! DataFusion's unparser prints an expression tree; two of its outputs do
//! not read back as the tree they came from, and both are mended here:
//!
//! - a sign before another sign or a negative number, `--y` or `--0.5`,
//!   starts a comment that swallows the rest of the line; the operand is put
//!   in parentheses, `-(-y)`;
//! - a float that is not finite prints as `inf` or `NaN`, which read back as
//!   column names; it is written as a cast from text, `CAST('inf' AS DOUBLE)`.

use std::ops::ControlFlow;

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{Result, ScalarValue};
use datafusion_expr::{cast, lit, Expr};
use datafusion_sql::sqlparser::ast::{self, visit_expressions_mut, UnaryOperator, VisitMut};
use datafusion_sql::unparser::Unparser;

/// Prints an expression as SQL without redundant parentheses.
pub(crate) fn to_sql(expr: &Expr) -> Result<String> {
    let expr = spell_non_finite(expr.clone())?;
    let mut ast = Unparser::default().with_pretty(true).expr_to_sql(&expr)?;
    separate_signs(&mut ast);
    Ok(ast.to_string())
}

/// `expr` with every non-finite float literal written as a cast from text.
fn spell_non_finite(expr: Expr) -> Result<Expr> {
    expr.transform_up(|e| {
        let (value, data_type) = match &e {
            Expr::Literal(ScalarValue::Float64(Some(v)), _) if !v.is_finite() => {
                (*v, DataType::Float64)
            }
            Expr::Literal(ScalarValue::Float32(Some(v)), _) if !v.is_finite() => {
                (f64::from(*v), DataType::Float32)
            }
            _ => return Ok(Transformed::no(e)),
        };
        let text = if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        Ok(Transformed::yes(cast(lit(text), data_type)))
    })
    .map(|t| t.data)
}

/// Puts the operand of every unary sign that would print right after another
/// sign in parentheses.
pub(crate) fn separate_signs<T: VisitMut>(tree: &mut T) {
    let _ = visit_expressions_mut(tree, |e| {
        if let ast::Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } = e
        {
            if starts_with_sign(expr) {
                let operand = std::mem::replace(expr.as_mut(), ast::Expr::value(ast::Value::Null));
                **expr = ast::Expr::Nested(Box::new(operand));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether `expr` prints starting with `-` or `+`.
fn starts_with_sign(expr: &ast::Expr) -> bool {
    match expr {
        ast::Expr::UnaryOp { .. } => true,
        ast::Expr::Nested(_)
        | ast::Expr::Identifier(_)
        | ast::Expr::CompoundIdentifier(_)
        | ast::Expr::Function(_)
        | ast::Expr::Cast { .. }
        | ast::Expr::Case { .. } => false,
        other => other.to_string().starts_with(['-', '+']),
    }
}
