//! SQL text in: scalar expressions over free variables, and queries over
//! tables known by their schemas, planned by DataFusion's SQL planner.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use datafusion::catalog::view::ViewTable;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateDefaults;
use datafusion::functions_aggregate::all_default_aggregate_functions;
use datafusion::functions_window::all_default_window_functions;
use datafusion_common::arrow::datatypes::{DataType, Field};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_datafusion_err, plan_err, DFSchema, Result, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion_optimizer::Analyzer;
use datafusion_sql::planner::{IdentNormalizer, PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast::{self, visit_expressions};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::Token;

use crate::catalog::{Catalog, Relation};
use crate::forward::udf::scalar_functions;

/// How deeply SQL text read here may nest (the parser's recursion limit; its
/// recursion grows the stack as it goes, so the limit is about time, not
/// room). DataFusion's own default, `datafusion.sql_parser.recursion_limit`,
/// is 50.
pub const MAX_SQL_NESTING: usize = 10_000;

/// The analyzed plan of the query `sql` over the relations `catalog` knows.
pub(crate) fn plan_query(sql: &str, catalog: Catalog) -> Result<LogicalPlan> {
    let context = SqlContext::new(Some(catalog));
    let plan = plan_statement(sql, &context)?;
    Analyzer::new().execute_and_check(plan, &context.registry.options, |_, _| {})
}

/// The plan of the one statement `sql`, unanalyzed.
fn plan_statement(sql: &str, context: &SqlContext) -> Result<LogicalPlan> {
    let invalid = |e: &dyn std::fmt::Display| plan_datafusion_err!("invalid SQL query: {e}");
    let mut statements = Parser::new(&GenericDialect {})
        .with_recursion_limit(MAX_SQL_NESTING)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| invalid(&e))?;
    let (Some(statement), true) = (statements.pop(), statements.is_empty()) else {
        return plan_err!(
            "expected one SQL query, found {} statements",
            statements.len() + 1
        );
    };
    SqlToRel::new(context).sql_statement_to_plan(statement)
}

/// Plans SQL scalar expressions over their free variables, which become the
/// nullable DOUBLE columns of the returned schema.
pub(crate) fn plan_scalar(sql: &[&str]) -> Result<(Vec<Expr>, DFSchema)> {
    let asts = sql
        .iter()
        .map(|s| parse_expr(s))
        .collect::<Result<Vec<_>>>()?;
    let schema = free_variables(&asts)?;
    let context = SqlContext::new(None);
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
        .with_recursion_limit(MAX_SQL_NESTING)
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

/// What the SQL planner may resolve: DataFusion's built-in functions and the
/// markers, and the tables `tables` knows, if any.
struct SqlContext<'a> {
    registry: &'static Registry,
    tables: Option<Catalog<'a>>,
}

/// The functions, planners and options every [`SqlContext`] shares, built
/// once: the SQL bridge plans one context per marker call.
struct Registry {
    functions: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    windows: HashMap<String, Arc<WindowUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let named = |name: &str, aliases: &[String]| {
        std::iter::once(name.to_string())
            .chain(aliases.iter().cloned())
            .collect::<Vec<_>>()
    };
    Registry {
        functions: by_name(scalar_functions(), |f: &ScalarUDF| {
            named(f.name(), f.aliases())
        }),
        aggregates: by_name(all_default_aggregate_functions(), |f: &AggregateUDF| {
            named(f.name(), f.aliases())
        }),
        windows: by_name(all_default_window_functions(), |f: &WindowUDF| {
            named(f.name(), f.aliases())
        }),
        planners: SessionStateDefaults::default_expr_planners(),
        options: ConfigOptions::default(),
    }
});

/// `udfs` by name and by alias.
fn by_name<F>(udfs: Vec<Arc<F>>, names: impl Fn(&F) -> Vec<String>) -> HashMap<String, Arc<F>> {
    let mut map = HashMap::new();
    for udf in udfs {
        for name in names(&udf) {
            map.insert(name, Arc::clone(&udf));
        }
    }
    map
}

impl<'a> SqlContext<'a> {
    fn new(tables: Option<Catalog<'a>>) -> Self {
        Self {
            registry: &REGISTRY,
            tables,
        }
    }
}

impl ContextProvider for SqlContext<'_> {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        let Some(tables) = self.tables else {
            return plan_err!("a scalar expression cannot read the table {name}");
        };
        match tables(&name)? {
            Some(Relation::Table(schema)) => Ok(Arc::new(LogicalTableSource::new(schema))),
            // A view's query is planned here, so that the planner inlines it
            // and what it reads is seen.
            Some(Relation::View(sql)) => {
                let plan = plan_statement(&sql, self)
                    .map_err(|e| e.context(format!("planning the view {name}")))?;
                Ok(provider_as_source(Arc::new(ViewTable::new(
                    plan,
                    Some(sql),
                ))))
            }
            None => plan_err!("table '{name}' not found"),
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.registry.planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.registry.functions.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.registry.aggregates.get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.registry.windows.get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.registry.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.registry.functions.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }

    fn udaf_names(&self) -> Vec<String> {
        self.registry.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.registry.windows.keys().cloned().collect()
    }
}
