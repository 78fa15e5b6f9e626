//! SQL text out: the one place this crate prints SQL.
//!
//! DataFusion's unparser prints expressions and plans. A plan is printed as a
//! chain of common table expressions, one per relation whose columns have
//! names of their own (see [`plan_to_sql`]), so the text nests no deeper than
//! a relation does and a relation used twice is written once. Two of the
//! unparser's outputs do not read back as the tree they came from, and both
//! are mended here:
//!
//! - a sign before another sign or a negative number, `--y` or `--0.5`,
//!   starts a comment that swallows the rest of the line; the operand is put
//!   in parentheses, `-(-y)`;
//! - a float that is not finite prints as `inf` or `NaN`, which read back as
//!   column names; it is written as a cast from text, `CAST('inf' AS DOUBLE)`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::stack::{depth, with_room, with_room_for};
use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{Result, ScalarValue};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::{cast, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion_sql::sqlparser::ast::{self, visit_expressions_mut, UnaryOperator, VisitMut};
use datafusion_sql::sqlparser::keywords::ALL_KEYWORDS;
use datafusion_sql::unparser::dialect::Dialect;
use datafusion_sql::unparser::Unparser;

/// Prints an expression as SQL without redundant parentheses.
pub(crate) fn to_sql(expr: &Expr) -> Result<String> {
    with_room_for(depth(expr), || {
        let expr = spell_non_finite(expr.clone())?;
        let mut ast = Unparser::new(&DataFusionDialect)
            .with_pretty(true)
            .expr_to_sql(&expr)?;
        separate_signs(&mut ast);
        Ok(ast.to_string())
    })
}

/// Prints a plan as one SQL query.
pub fn plan_to_sql(plan: &LogicalPlan) -> Result<String> {
    with_room(|| {
        let plan = plan
            .clone()
            .transform_up_with_subqueries(|node| node.map_expressions(spell_non_finite_in_place))?
            .data;
        let mut chain = Chain::default();
        let root = chain.flatten(plan)?;
        let root = unparse(&root)?;
        if chain.tables.is_empty() {
            return Ok(root);
        }
        let tables: Vec<String> = chain
            .tables
            .iter()
            .map(|(name, body)| format!("{name} AS ({body})"))
            .collect();
        Ok(format!("WITH {} {root}", tables.join(", ")))
    })
}

fn unparse(plan: &LogicalPlan) -> Result<String> {
    let mut statement = Unparser::new(&DataFusionDialect)
        .with_pretty(true)
        .plan_to_sql(plan)?;
    separate_signs(&mut statement);
    Ok(statement.to_string())
}

/// The common table expressions of a plan being printed.
#[derive(Default)]
struct Chain {
    names: HashMap<LogicalPlan, String>,
    tables: Vec<(String, String)>,
}

impl Chain {
    /// `plan` with every input that has columns of its own names replaced by
    /// a scan of its table expression.
    #[recursive::recursive]
    fn flatten(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let plan = plan
            .map_children(|child| {
                if stands_alone(&child) {
                    self.table(child).map(Transformed::yes)
                } else {
                    self.flatten(child).map(Transformed::yes)
                }
            })?
            .data;
        plan.recompute_schema()
    }

    /// A scan of the table expression that computes `plan`, written once.
    fn table(&mut self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let name = match self.names.get(&plan) {
            Some(name) => name.clone(),
            None => {
                let body = unparse(&self.flatten(plan.clone())?)?;
                let name = format!("__ag_cte{}", self.tables.len());
                self.tables.push((name.clone(), body));
                self.names.insert(plan.clone(), name.clone());
                name
            }
        };
        let source = LogicalTableSource::new(Arc::new(plan.schema().as_arrow().clone()));
        LogicalPlanBuilder::scan(name, Arc::new(source), None)?.build()
    }
}

/// DataFusion's SQL, as DataFusion's own default unparser dialect writes it:
/// identifiers are quoted when they are keywords, hold upper-case letters (the
/// parser would lower-case them) or anything but letters, digits and `_`.
/// The default dialect decides this with a regular expression compiled anew
/// for every identifier; this one reads the characters.
struct DataFusionDialect;

impl Dialect for DataFusionDialect {
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        let mut chars = identifier.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let upper = identifier.to_ascii_uppercase();
        let keyword = upper != "ID" && ALL_KEYWORDS.binary_search(&upper.as_str()).is_ok();
        (keyword || !plain).then_some('"')
    }
}

/// Whether a relation can be its own table expression: a projection whose
/// columns are all unqualified, so whoever reads them names them alone.
fn stands_alone(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Projection(_))
        && plan
            .schema()
            .iter()
            .all(|(qualifier, _)| qualifier.is_none())
}

fn spell_non_finite_in_place(expr: Expr) -> Result<Transformed<Expr>> {
    spell_non_finite(expr).map(Transformed::yes)
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
