//! SQL text out: the one place this crate prints SQL.
//!
//! DataFusion's unparser prints expressions and plans. A plan is printed as a
//! chain of common table expressions, one per relation whose columns have
//! names of their own (see [`plan_to_sql`]), so the text nests no deeper than
//! a relation does and a relation used twice is written once. Two of the
//! unparser's outputs do not read back as the tree they came from, and
//! are mended here:
//!
//! - its "pretty" mode drops parentheses that matter — `a * (b % c)` prints
//!   as `a * b % c`, which reads back as `(a * b) % c` — so every operation is
//!   printed in parentheses and only those the grammar makes redundant are
//!   removed ([`drop_redundant_parentheses`]);
//! - a sign before another sign or a negative number, `--y` or `--0.5`,
//!   starts a comment that swallows the rest of the line; the operand is put
//!   in parentheses, `-(-y)`;
//! - a float that is not finite prints as `inf` or `NaN`, which read back as
//!   column names; it is written as a cast from text, `CAST('inf' AS DOUBLE)`
//!   (`'Infinity'` in PostgreSQL), or in SQLite, which reads no such text, as
//!   a literal that overflows to infinity, `9e999`.
//!
//! An expression printed for another engine ([`to_dialect_sql`]) is first
//! made to mean there what it means in DataFusion: DataFusion's implicit
//! conversions are made explicit (so `floor(7) / 2` divides DOUBLEs in every
//! engine), and functions, casts and operators are spelled as the engine
//! spells them (see [`super::dialect`]).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::forward::udf::StopGradient;
use crate::stack::{depth, with_room, with_room_for};
use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{DFSchema, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::{BinaryExpr, Cast, ScalarFunction, TryCast};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::{
    binary_expr, cast, lit, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion_functions::math::expr_fn::trunc;
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion_sql::sqlparser::ast::{self, visit_expressions_mut, UnaryOperator, VisitMut};
use datafusion_sql::unparser::Unparser;

use super::dialect::{
    engine_function, DataFusionDialect, Dialect, EngineFunction, NonFinite, Spelling,
};

/// Prints an expression as DataFusion SQL without redundant parentheses.
pub(crate) fn to_sql(expr: &Expr) -> Result<String> {
    with_room_for(depth(expr), || print(expr.clone(), Dialect::DataFusion))
}

/// Prints an expression whose derivatives are formed (it holds no marker)
/// as DataFusion SQL any session reads, one without `stop_gradient` too.
pub(crate) fn formed_to_sql(expr: &Expr) -> Result<String> {
    with_room_for(depth(expr), || {
        print(formed(expr.clone())?, Dialect::DataFusion)
    })
}

/// Prints an expression over the columns of `schema` whose derivatives are
/// formed as SQL for `dialect`, or fails naming what the engine has no
/// spelling for.
pub(crate) fn to_dialect_sql(expr: &Expr, schema: &DFSchema, dialect: Dialect) -> Result<String> {
    with_room_for(depth(expr), || {
        let expr = formed(expr.clone())?;
        let expr = match dialect {
            Dialect::DataFusion => expr,
            _ => spelled_for(expr, schema, dialect)?,
        };
        print(expr, dialect)
    })
}

/// `expr`, whose derivatives are formed, without `stop_gradient`: what it
/// keeps out of derivatives is out, and its value is its argument's.
pub(super) fn formed(expr: Expr) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::ScalarFunction(ScalarFunction { func, mut args })
            if func.inner().is::<StopGradient>() && args.len() == 1 =>
        {
            Ok(Transformed::yes(args.remove(0)))
        }
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

fn print(expr: Expr, dialect: Dialect) -> Result<String> {
    let expr = spell_non_finite(expr, dialect)?;
    let unparser_dialect = dialect.unparser();
    let mut ast = Unparser::new(unparser_dialect.as_ref())
        .with_pretty(false)
        .expr_to_sql(&expr)?;
    if dialect.non_finite() == NonFinite::Overflow {
        write_infinities_as_overflow(&mut ast);
    }
    drop_redundant_parentheses(&mut ast);
    if let ast::Expr::Nested(inner) = ast {
        ast = *inner;
    }
    separate_signs(&mut ast);
    Ok(ast.to_string())
}

/// `expr` as it must be written for `dialect` to compute what it computes in
/// DataFusion.
fn spelled_for(expr: Expr, schema: &DFSchema, dialect: Dialect) -> Result<Expr> {
    let explicit = expr.rewrite(&mut TypeCoercionRewriter::new(schema))?.data;
    explicit
        .transform_up(|e| Ok(fold_literal_cast(e)))?
        .data
        .transform_up(|e| spell(e, schema, dialect))
        .map(|t| t.data)
}

/// A cast of a literal to a float type as a float literal: `CAST(2 AS
/// DOUBLE)`, which type coercion writes, as `2.0`, and `CAST('NaN' AS
/// DOUBLE)` as the NaN it is in DataFusion (engines read such text
/// differently: SQLite reads it as 0).
pub(super) fn fold_literal_cast(expr: Expr) -> Transformed<Expr> {
    if let Expr::Cast(Cast { expr: inner, field }) = &expr {
        if let Expr::Literal(value, _) = inner.as_ref() {
            let target = field.data_type();
            if target.is_floating() && !value.is_null() {
                if let Ok(folded) = value.cast_to(target) {
                    return Transformed::yes(Expr::Literal(folded, None));
                }
            }
        }
    }
    Transformed::no(expr)
}

/// One node, its children already spelled, as `dialect` spells it.
pub(super) fn spell(expr: Expr, schema: &DFSchema, dialect: Dialect) -> Result<Transformed<Expr>> {
    let type_of = |e: &Expr| e.get_type(schema);
    match expr {
        Expr::ScalarFunction(ScalarFunction { func, args })
            if !func.inner().is::<EngineFunction>() =>
        {
            match dialect.spelling(func.name(), args.len())? {
                Spelling::Same => Ok(Transformed::no(Expr::ScalarFunction(ScalarFunction {
                    func,
                    args,
                }))),
                Spelling::Named(spelled) => Ok(Transformed::yes(engine_function(spelled, args))),
                Spelling::NamedAsDouble(spelled) => Ok(Transformed::yes(cast(
                    engine_function(spelled, args),
                    DataType::Float64,
                ))),
                Spelling::Written(write) => write(args).map(Transformed::yes),
                Spelling::Missing => Err(dialect.no_spelling(format_args!("'{}'", func.name()))),
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if respelled_operator(op, &type_of(&left)?, &type_of(&right)?) =>
        {
            let (symbol, operands) = match op {
                Operator::Modulo => ("%", "non-integer"),
                _ => ("/", "integer"),
            };
            let spelling = dialect.spelling(symbol, 2).map_err(|_| {
                dialect.no_spelling(format_args!("'{symbol}' of {operands} operands"))
            })?;
            match spelling {
                Spelling::Same => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr::new(
                    left, op, right,
                )))),
                Spelling::Named(spelled) => Ok(Transformed::yes(engine_function(
                    spelled,
                    vec![*left, *right],
                ))),
                _ => Err(dialect.no_spelling(format_args!("'{symbol}' of {operands} operands"))),
            }
        }
        Expr::BinaryExpr(BinaryExpr { ref op, .. }) if !written_everywhere(op) => {
            Err(dialect.no_spelling(format_args!("the operator '{op}'")))
        }
        Expr::Cast(Cast { expr: inner, field }) => {
            let inner = truncated_if_rounded(*inner, field.data_type(), schema, dialect)?;
            Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(
                Box::new(inner),
                field,
            ))))
        }
        Expr::TryCast(TryCast { expr: inner, field }) => {
            let inner = truncated_if_rounded(*inner, field.data_type(), schema, dialect)?;
            if dialect.has_try_cast() {
                Ok(Transformed::yes(Expr::TryCast(TryCast::new_from_field(
                    Box::new(inner),
                    field,
                ))))
            } else if field.data_type().is_floating() && type_of(&inner)?.is_numeric() {
                // A cast from a number to a float cannot fail, so it needs no TRY.
                Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(
                    Box::new(inner),
                    field,
                ))))
            } else {
                Err(dialect.no_spelling(format_args!("TRY_CAST to {}", field.data_type())))
            }
        }
        Expr::Column(_)
        | Expr::Literal(..)
        | Expr::Alias(_)
        | Expr::BinaryExpr(_)
        | Expr::ScalarFunction(_)
        | Expr::Not(_)
        | Expr::Negative(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::Between(_)
        | Expr::InList(_)
        | Expr::Case(_) => Ok(Transformed::no(expr)),
        other => Err(dialect.no_spelling(format_args!(
            "the {} expression `{other}`",
            other.variant_name()
        ))),
    }
}

/// `inner`, the operand of a cast to `target`, truncated first where the
/// engine would round it to an integer: DataFusion truncates.
fn truncated_if_rounded(
    inner: Expr,
    target: &DataType,
    schema: &DFSchema,
    dialect: Dialect,
) -> Result<Expr> {
    let rounds = dialect.rounds_float_to_integer_casts()
        && target.is_integer()
        && fractional(&inner.get_type(schema)?);
    Ok(if rounds { trunc(vec![inner]) } else { inner })
}

/// Whether values of `data_type` may have a fractional part.
fn fractional(data_type: &DataType) -> bool {
    data_type.is_floating() || data_type.is_decimal()
}

/// Whether `op` over operands of these types is one an engine may spell
/// differently: the remainder of non-integers, or the quotient of integers.
fn respelled_operator(op: Operator, left: &DataType, right: &DataType) -> bool {
    let integers = left.is_integer() && right.is_integer();
    match op {
        Operator::Modulo => !integers,
        Operator::Divide => integers,
        _ => false,
    }
}

/// Whether every engine here writes `op` as DataFusion does, with its meaning.
fn written_everywhere(op: &Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Plus | Minus
            | Multiply
            | Divide
            | Modulo
            | Eq
            | NotEq
            | Lt
            | LtEq
            | Gt
            | GtEq
            | And
            | Or
            | IsDistinctFrom
            | IsNotDistinctFrom
    )
}

/// Prints a plan as one SQL query.
pub fn plan_to_sql(plan: &LogicalPlan) -> Result<String> {
    plans_to_sql(&[], plan)
}

/// Prints `root` as one SQL query in which the relations `named` — which
/// `root`, and each the ones before it, read by name — are common table
/// expressions of those names.
pub(crate) fn plans_to_sql(named: &[(&str, &LogicalPlan)], root: &LogicalPlan) -> Result<String> {
    with_room(|| {
        // A `VALUES` list, which the unparser writes only as a whole
        // statement, is written as selects of its rows.
        let spelled = |plan: &LogicalPlan| -> Result<LogicalPlan> {
            Ok(plan
                .clone()
                .transform_up_with_subqueries(|node| match &node {
                    LogicalPlan::Values(values) => selects(values).map(Transformed::yes),
                    // An alias of an alias (a CTE read under another name):
                    // the outer name is the one read, and the unparser
                    // writes the pair as two relations.
                    LogicalPlan::SubqueryAlias(outer) => match outer.input.as_ref() {
                        LogicalPlan::SubqueryAlias(inner) => {
                            LogicalPlanBuilder::from(inner.input.as_ref().clone())
                                .alias(outer.alias.clone())?
                                .build()
                                .map(Transformed::yes)
                        }
                        _ => Ok(Transformed::no(node)),
                    },
                    _ => null_safe_keys(node)?.map_expressions(|e| {
                        let e = typed_nulls(formed(e)?)?;
                        spell_non_finite(e, Dialect::DataFusion).map(Transformed::yes)
                    }),
                })?
                .data)
        };
        let mut chain = Chain::default();
        for (name, plan) in named {
            let body = unparse(&chain.flatten(spelled(plan)?)?)?;
            chain.tables.push((name.to_string(), body));
        }
        let root = unparse(&chain.flatten(spelled(root)?)?)?;
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

/// A join whose keys meet when both are NULL with those keys written as
/// `IS NOT DISTINCT FROM` conditions: the unparser writes every key with
/// `=`, under which NULL keys never meet.
fn null_safe_keys(node: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Join(mut join) = node else {
        return Ok(node);
    };
    if join.null_equality == NullEquality::NullEqualsNothing || join.on.is_empty() {
        return Ok(LogicalPlan::Join(join));
    }
    let keys = std::mem::take(&mut join.on)
        .into_iter()
        .map(|(a, b)| binary_expr(a, Operator::IsNotDistinctFrom, b));
    join.filter = keys.chain(join.filter.take()).reduce(Expr::and);
    join.null_equality = NullEquality::NullEqualsNothing;
    Ok(LogicalPlan::Join(join))
}

fn unparse(plan: &LogicalPlan) -> Result<String> {
    let mut statement = Unparser::new(&DataFusionDialect)
        .with_pretty(false)
        .plan_to_sql(plan)?;
    drop_redundant_parentheses(&mut statement);
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
                let name = format!("__ag_cte{}", self.names.len());
                self.tables.push((name.clone(), body));
                self.names.insert(plan.clone(), name.clone());
                name
            }
        };
        let source = LogicalTableSource::new(Arc::new(plan.schema().as_arrow().clone()));
        LogicalPlanBuilder::scan(name, Arc::new(source), None)?.build()
    }
}

/// `expr` with every NULL of a known type written as a cast to it: a NULL
/// printed alone reads back without one, and a relation whose column holds
/// only such NULLs (one branch of a union, say) would lose the column's type.
pub(super) fn typed_nulls(expr: Expr) -> Result<Expr> {
    expr.transform_up(|e| match &e {
        Expr::Literal(value, _) if value.is_null() && value.data_type() != DataType::Null => {
            let data_type = value.data_type();
            Ok(Transformed::yes(cast(lit(ScalarValue::Null), data_type)))
        }
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// The rows of `values` as `SELECT … UNION ALL SELECT …` of one row each.
fn selects(values: &datafusion_expr::logical_plan::Values) -> Result<LogicalPlan> {
    let names: Vec<String> = values
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut union: Option<LogicalPlanBuilder> = None;
    for row in &values.values {
        // A NULL printed alone has no type: written as a cast to the column's.
        let typed = row
            .iter()
            .zip(values.schema.fields())
            .map(|(e, field)| match e {
                Expr::Literal(value, _) if value.is_null() => {
                    cast(e.clone(), field.data_type().clone())
                }
                other => other.clone(),
            });
        let select = LogicalPlanBuilder::empty(true)
            .project(typed.zip(&names).map(|(e, n)| e.alias(n)))?
            .build()?;
        union = Some(match union {
            None => LogicalPlanBuilder::from(select),
            Some(union) => union.union(select)?,
        });
    }
    match union {
        Some(union) => union.build(),
        None => datafusion_common::plan_err!("an empty VALUES list has no SQL spelling"),
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

/// `expr` with every non-finite float literal written as `dialect` reads
/// it: a cast from text, or (SQLite) left for [`write_infinities_as_overflow`].
pub(super) fn spell_non_finite(expr: Expr, dialect: Dialect) -> Result<Expr> {
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
        match dialect.non_finite() {
            NonFinite::Cast { infinity } => {
                let text = if value.is_nan() {
                    "NaN".to_string()
                } else if value > 0.0 {
                    infinity.to_string()
                } else {
                    format!("-{infinity}")
                };
                Ok(Transformed::yes(cast(lit(text), data_type)))
            }
            NonFinite::Overflow if value.is_nan() => Err(dialect.no_spelling("NaN")),
            NonFinite::Overflow => Ok(Transformed::no(e)),
        }
    })
    .map(|t| t.data)
}

/// The unparser's `inf` and `-inf` as `9e999` and `-9e999`, numbers too large
/// for a double, which SQLite reads as infinities.
pub(super) fn write_infinities_as_overflow<T: VisitMut>(tree: &mut T) {
    let overflow = || ast::Expr::value(ast::Value::Number("9e999".to_string(), false));
    let _ = visit_expressions_mut(tree, |e| {
        if let ast::Expr::Value(value) = e {
            match &value.value {
                ast::Value::Number(n, _) if n == "inf" => *e = overflow(),
                ast::Value::Number(n, _) if n == "-inf" => {
                    *e = ast::Expr::UnaryOp {
                        op: UnaryOperator::Minus,
                        expr: Box::new(overflow()),
                    }
                }
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Removes the parentheses that cannot change how the text reads back: around
/// a name, a literal, a call, a cast or a `CASE`; around the whole of a call's
/// argument, a cast's operand or a `CASE`'s parts; and around an operation on
/// the left of an operation that binds no tighter, or on the right of one that
/// binds looser (`a - (b - c)`, `a * (b % c)` and `a + (b + c)` keep theirs:
/// floating-point addition is not associative either).
pub(crate) fn drop_redundant_parentheses<T: VisitMut>(tree: &mut T) {
    let _ = visit_expressions_mut(tree, |e| {
        match e {
            ast::Expr::Nested(inner) if is_atom(inner) => {
                let inner = std::mem::replace(inner.as_mut(), ast::Expr::value(ast::Value::Null));
                *e = inner;
            }
            ast::Expr::BinaryOp { left, op, right } => {
                // The unparser leaves signs, `IS NULL`, `NOT` and the like
                // bare; next to an operator they would take in more, or
                // less, than they stand for (`-y * z` reads as `-(y * z)`).
                guard(left);
                guard(right);
                if let Some(outer) = binding(op) {
                    // Comparisons do not chain: `(a < b) = c` keeps its parentheses.
                    unwrap_if(left, |inner| {
                        inner > outer || (inner == outer && outer != COMPARISON)
                    });
                    unwrap_if(right, |inner| inner > outer);
                }
            }
            ast::Expr::Function(function) => {
                if let ast::FunctionArguments::List(list) = &mut function.args {
                    for arg in &mut list.args {
                        if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg)) = arg {
                            unwrap_if(arg, |_| true);
                        }
                    }
                }
            }
            ast::Expr::UnaryOp { expr: operand, .. }
            | ast::Expr::IsNull(operand)
            | ast::Expr::IsNotNull(operand)
            | ast::Expr::IsTrue(operand)
            | ast::Expr::IsNotTrue(operand)
            | ast::Expr::IsFalse(operand)
            | ast::Expr::IsNotFalse(operand)
            | ast::Expr::IsUnknown(operand)
            | ast::Expr::IsNotUnknown(operand) => guard(operand),
            ast::Expr::Cast { expr, .. } => unwrap_if(expr, |_| true),
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    unwrap_if(operand, |_| true);
                }
                for when in conditions {
                    unwrap_if(&mut when.condition, |_| true);
                    unwrap_if(&mut when.result, |_| true);
                }
                if let Some(otherwise) = else_result {
                    unwrap_if(otherwise, |_| true);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Puts an operand in parentheses unless it is an atom or an operation the
/// rules above have parenthesized.
fn guard(operand: &mut Box<ast::Expr>) {
    if !is_atom(operand) && !matches!(operand.as_ref(), ast::Expr::BinaryOp { .. }) {
        let bare = std::mem::replace(operand.as_mut(), ast::Expr::value(ast::Value::Null));
        **operand = ast::Expr::Nested(Box::new(bare));
    }
}

/// Replaces `(operation)` by `operation` when `keep_out(its binding)` holds
/// (an operation whose binding is not known keeps its parentheses).
fn unwrap_if(expr: &mut ast::Expr, keep_out: impl Fn(u8) -> bool) {
    if let ast::Expr::Nested(inner) = expr {
        let strength = match inner.as_ref() {
            ast::Expr::BinaryOp { op, .. } => binding(op),
            _ => None,
        };
        if strength.is_some_and(keep_out) {
            let inner = std::mem::replace(inner.as_mut(), ast::Expr::value(ast::Value::Null));
            *expr = inner;
        }
    }
}

const COMPARISON: u8 = 3;

/// How tightly the parser binds a binary operator, for those printed here;
/// all are left-associative.
fn binding(op: &ast::BinaryOperator) -> Option<u8> {
    use ast::BinaryOperator::*;
    match op {
        Or => Some(1),
        And => Some(2),
        Eq | NotEq | Lt | LtEq | Gt | GtEq => Some(COMPARISON),
        Plus | Minus => Some(4),
        Multiply | Divide | Modulo => Some(5),
        _ => None,
    }
}

/// An expression that reads back the same wherever it stands.
fn is_atom(expr: &ast::Expr) -> bool {
    match expr {
        ast::Expr::Identifier(_)
        | ast::Expr::CompoundIdentifier(_)
        | ast::Expr::Function(_)
        | ast::Expr::Cast { .. }
        | ast::Expr::Case { .. }
        | ast::Expr::Nested(_) => true,
        ast::Expr::Value(value) => !value.to_string().starts_with(['-', '+']),
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use datafusion_expr::{col, lit, when, Expr};
    use datafusion_functions::math::expr_fn::{exp, sin};

    use super::to_sql;
    use crate::sql::plan::plan_scalar;

    /// Random trees of the operations whose spelling depends on
    /// parentheses: every binary operator on both sides of every other,
    /// signs, `CASE` and calls.
    fn next(state: &mut u64, n: u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 33) % n
    }

    fn random_tree(state: &mut u64, depth: usize) -> Expr {
        if depth == 0 || next(state, 5) == 0 {
            return match next(state, 4) {
                0 => col("x"),
                1 => col("y"),
                2 => lit(next(state, 1000) as f64 / 100.0),
                _ => lit(next(state, 10) as i64),
            };
        }
        let choice = next(state, 16);
        let mut child = || random_tree(state, depth - 1);
        match choice {
            0 => child() + child(),
            1 => child() - child(),
            2 => child() * child(),
            3 => child() / child(),
            4 => child() % child(),
            5 => child().gt(child()),
            6 => child().eq(child()),
            7 => child().lt_eq(child()),
            8 => child().and(child()),
            9 => child().or(child()),
            10 => Expr::Negative(Box::new(match child() {
                // `-0.5` reads back as the literal −0.5, not as a negation.
                Expr::Literal(..) => col("x") - col("y"),
                other => other,
            })),
            11 => child().is_null(),
            12 => when(child().gt(child()), sin(child()))
                .otherwise(sin(child()))
                .unwrap(),
            13 => sin(child()),
            14 => exp(child() - child()),
            _ => Expr::Not(Box::new(child().gt(child()))),
        }
    }

    #[test]
    fn printed_expressions_read_back_as_the_same_tree() {
        let mut state = 20_261_123;
        for _ in 0..3_000 {
            let expr = random_tree(&mut state, 5);
            let text = to_sql(&expr).unwrap();
            assert!(!text.contains("--"), "{text}");
            let (read, _) = plan_scalar(&[&text]).unwrap();
            assert_eq!(read[0], expr, "{expr}\nprinted as {text}");
        }
    }

    #[test]
    fn parentheses_stay_where_the_grammar_needs_them() {
        let (x, y) = (col("x"), col("y"));
        let cases = [
            (x.clone() * (y.clone() % lit(2.5)), "x * (y % 2.5)"),
            (x.clone() - (y.clone() - lit(1.0)), "x - (y - 1.0)"),
            (x.clone() + (y.clone() + lit(1.0)), "x + (y + 1.0)"),
            ((x.clone() + y.clone()) * lit(2.0), "(x + y) * 2.0"),
            (x.clone() * y.clone() % lit(2.0), "x * y % 2.0"),
            (x.clone() / (y.clone() * lit(2.0)), "x / (y * 2.0)"),
            (sin(x.clone() + y.clone()), "sin(x + y)"),
        ];
        for (expr, text) in cases {
            assert_eq!(to_sql(&expr).unwrap(), text);
        }
    }
}
