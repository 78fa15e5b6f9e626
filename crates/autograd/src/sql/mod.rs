//! Differentiation of SQL text: parse a scalar expression, differentiate it,
//! and print the derivative back as SQL.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_datafusion_err, plan_err, DFSchema, Result, TableReference};
use datafusion_expr::planner::ContextProvider;
use datafusion_expr::{AggregateUDF, Expr, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion_sql::planner::{IdentNormalizer, PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast::{self, visit_expressions};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::Token;

use crate::functions::scalar_functions;
use crate::marker::Derivative;
use crate::reals::ColumnTypes;

pub(crate) mod bridge;
mod emit;

pub(crate) use emit::to_sql;

/// The derivative of the SQL scalar expression `expr_sql` with respect to the
/// column `wrt`, as SQL.
///
/// Every identifier is a free DOUBLE variable (qualified names such as `a.x`
/// keep their qualifier); functions are DataFusion's built-ins plus the
/// markers, so nested `grad`/`jvp`/`vjp` calls give higher derivatives.
///
/// ```
/// use datafusion_autograd::differentiate_sql;
///
/// assert_eq!(differentiate_sql("x * x + 3 * y", "x").unwrap(), "x + x");
/// assert_eq!(differentiate_sql("sin(2 * x)", "x").unwrap(), "cos(2 * x) * 2.0");
/// ```
pub fn differentiate_sql(expr_sql: &str, wrt: &str) -> Result<String> {
    let (exprs, _) = plan_scalar(&[expr_sql, wrt])?;
    let wrt = &exprs[1];
    if !matches!(wrt, Expr::Column(_)) {
        return plan_err!("the variable to differentiate by must be a column name, found `{wrt}`");
    }
    // Every free variable is a DOUBLE column, so the expression is real as written.
    to_sql(&Derivative::Grad.expand(&exprs, ColumnTypes::Real)?)
}

/// Plans SQL scalar expressions over their free variables, which become the
/// nullable DOUBLE columns of the returned schema.
pub(crate) fn plan_scalar(sql: &[&str]) -> Result<(Vec<Expr>, DFSchema)> {
    let asts = sql
        .iter()
        .map(|s| parse_expr(s))
        .collect::<Result<Vec<_>>>()?;
    let schema = free_variables(&asts)?;
    let context = ScalarContext::new();
    let planner = SqlToRel::new(&context);
    let exprs = asts
        .into_iter()
        .map(|ast| planner.sql_to_expr(ast, &schema, &mut PlannerContext::new()))
        .collect::<Result<Vec<_>>>()?;
    Ok((exprs, schema))
}

/// Parses exactly one SQL expression.
fn parse_expr(sql: &str) -> Result<ast::Expr> {
    let invalid =
        |e: &dyn std::fmt::Display| plan_datafusion_err!("invalid SQL expression `{sql}`: {e}");
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .map_err(|e| invalid(&e))?;
    let expr = parser.parse_expr().map_err(|e| invalid(&e))?;
    match parser.next_token().token {
        Token::EOF => Ok(expr),
        extra => Err(invalid(&format!(
            "unexpected `{extra}` after the expression"
        ))),
    }
}

/// A schema with one nullable DOUBLE column per identifier in `exprs`.
fn free_variables(exprs: &[ast::Expr]) -> Result<DFSchema> {
    let normalizer = IdentNormalizer::new(true);
    let mut names = BTreeSet::new();
    for expr in exprs {
        let _ = visit_expressions(expr, |e| {
            let parts = match e {
                ast::Expr::Identifier(ident) => vec![ident.clone()],
                ast::Expr::CompoundIdentifier(idents) => idents.clone(),
                _ => return ControlFlow::<()>::Continue(()),
            };
            let mut parts: Vec<String> =
                parts.into_iter().map(|i| normalizer.normalize(i)).collect();
            let name = parts.pop().unwrap_or_default();
            let qualifier = match parts.as_slice() {
                [] => None,
                [table] => Some(TableReference::bare(table.as_str())),
                [schema, table] => Some(TableReference::partial(schema.as_str(), table.as_str())),
                [catalog, schema, table, ..] => Some(TableReference::full(
                    catalog.as_str(),
                    schema.as_str(),
                    table.as_str(),
                )),
            };
            names.insert((qualifier, name));
            ControlFlow::Continue(())
        });
    }
    let fields = names
        .into_iter()
        .map(|(qualifier, name)| {
            (
                qualifier,
                Arc::new(Field::new(name, DataType::Float64, true)),
            )
        })
        .collect();
    DFSchema::new_with_metadata(fields, HashMap::new())
}

/// What the SQL planner may resolve inside a scalar expression: the built-in
/// scalar functions and the markers; no tables.
struct ScalarContext {
    functions: HashMap<String, Arc<ScalarUDF>>,
    options: ConfigOptions,
}

impl ScalarContext {
    fn new() -> Self {
        let mut functions = HashMap::new();
        for udf in scalar_functions() {
            for alias in udf.aliases() {
                functions.insert(alias.clone(), Arc::clone(&udf));
            }
            functions.insert(udf.name().to_string(), udf);
        }
        Self {
            functions,
            options: ConfigOptions::default(),
        }
    }
}

impl ContextProvider for ScalarContext {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        plan_err!("a scalar expression cannot read the table {name}")
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.functions.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, _name: &str) -> Option<Arc<AggregateUDF>> {
        None
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }

    fn udaf_names(&self) -> Vec<String> {
        vec![]
    }

    fn udwf_names(&self) -> Vec<String> {
        vec![]
    }
}
