//! Whole-query gradients as statements for other engines: DuckDB,
//! PostgreSQL and SQLite.
//!
//! The gradient's [`Staged`] plans are written as plain SQL, one relation
//! per plan node: every node is a common table expression whose columns are
//! named by position (`c0`, `c1`, …) and read through an alias of its own, so
//! nothing depends on how an engine scopes the names of a derived table
//! (DataFusion lets a query read `t.x` through an unaliased subquery over
//! `t`; DuckDB, PostgreSQL and SQLite do not). Each stage becomes a temporary
//! table, created in order, then the result is one query, then the stages are
//! dropped. Expressions are spelled for the engine by the same table as
//! per-row derivatives ([`super::dialect`]); an operator, function or plan
//! node the engine has no spelling for is an error naming it and the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{plan_err, Column, DFSchema, Result, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::logical_plan::{FetchType, SkipType};
use datafusion_expr::{
    cast, Distinct, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, SortExpr, Subquery,
};
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion_sql::sqlparser::ast;
use datafusion_sql::unparser::Unparser;

use super::bridge::{rewrite_sql_in, Placement};
use super::dialect::{Dialect, NonFinite};
use super::emit::{
    drop_redundant_parentheses, fold_literal_cast, formed, separate_signs, spell, spell_non_finite,
    typed_nulls, write_infinities_as_overflow,
};
use super::gradient::plan_gradients;
use crate::catalog::Catalog;
use crate::options::AutogradOptions;
use crate::relational::{StageSource, Staged};
use crate::stack::with_room;

/// A gradient as statements for one engine: run `setup` in order, read the
/// rows of `query`, then run `cleanup` (also when a statement failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStatements {
    /// `CREATE TEMPORARY TABLE` of each stage, in the order they read each other.
    pub setup: Vec<String>,
    /// The gradient: every row of the parameter's table, all its columns, `grad`.
    pub query: String,
    /// `DROP TABLE IF EXISTS` of every table `setup` creates.
    pub cleanup: Vec<String>,
}

impl EngineStatements {
    /// Every statement, in the order they run.
    pub fn all(&self) -> Vec<&str> {
        self.setup
            .iter()
            .chain(std::iter::once(&self.query))
            .chain(&self.cleanup)
            .map(String::as_str)
            .collect()
    }
}

/// The gradient of the loss query `loss` with respect to `wrt`
/// (`"<table>.<column>"`) as statements for `dialect`, over the tables and
/// views `tables` gives (the engine's own, by their schemas and queries).
///
/// ```
/// use std::sync::Arc;
/// use datafusion::arrow::datatypes::{DataType, Field, Schema};
/// use datafusion_autograd::{gradient_statements, Dialect, Relation};
///
/// let w = Arc::new(Schema::new(vec![
///     Field::new("i", DataType::Int64, false),
///     Field::new("w", DataType::Float64, false),
/// ]));
/// let catalog = |table: &datafusion_common::TableReference| {
///     Ok((table.table() == "w").then(|| Relation::Table(Arc::clone(&w))))
/// };
/// let statements = gradient_statements(
///     "SELECT SUM(w * w) FROM w", "w.w", Dialect::DuckDb, &catalog, &Default::default(),
/// ).unwrap();
/// assert!(statements.setup.iter().all(|s| s.starts_with("CREATE TEMPORARY TABLE")));
/// assert!(statements.query.contains(r#"CAST("t"."c2" AS DOUBLE) AS "grad""#));
/// assert_eq!(statements.setup.len(), statements.cleanup.len());
///
/// let e = gradient_statements(
///     "SELECT SUM(w % 0.5) FROM w", "w.w", Dialect::PostgreSql, &catalog, &Default::default(),
/// ).unwrap_err();
/// assert!(e.to_string().contains("postgresql has no spelling for '%' of non-integer operands"));
/// ```
pub fn gradient_statements(
    loss: &str,
    wrt: &str,
    dialect: Dialect,
    tables: Catalog,
    options: &AutogradOptions,
) -> Result<EngineStatements> {
    with_room(|| {
        if dialect == Dialect::DataFusion {
            return plan_err!(
                "gradient statements are for other engines; a DataFusion session computes the \
                 gradient itself (gradient_sql writes it as one DataFusion query)"
            );
        }
        let staged = plan_gradients(loss, &[wrt], tables, options)?;
        staged_statements(&staged, 0, dialect)
    })
}

/// A statement of the engine `dialect` with `grad`/`jvp`/`vjp` markers,
/// `gradient('<loss query>', '<table>.<column>')` calls and markers over
/// whole queries (`grad((SELECT …), w)`), as statements for that engine:
/// `setup` computes every gradient the statement asks for into temporary
/// tables, `query` is the statement reading them (its other text kept as
/// written), and `cleanup` drops them. Each marker's derivative is written
/// as the engine spells it; what it has no spelling for is an error naming it
/// and the engine. Losses are DataFusion SQL over the relations `tables`
/// gives (the engine's own, by their schemas and queries).
///
/// ```
/// use std::sync::Arc;
/// use datafusion::arrow::datatypes::{DataType, Field, Schema};
/// use datafusion_autograd::{engine_sql, Dialect, Relation};
///
/// let w = Arc::new(Schema::new(vec![
///     Field::new("i", DataType::Int64, false),
///     Field::new("w", DataType::Float64, false),
/// ]));
/// let catalog = |table: &datafusion_common::TableReference| {
///     Ok((table.table() == "w").then(|| Relation::Table(Arc::clone(&w))))
/// };
/// let options = Default::default();
/// let marker = engine_sql("SELECT grad(w * w, w) AS d FROM w", Dialect::PostgreSql, &catalog, &options)
///     .unwrap();
/// assert!(marker.setup.is_empty() && marker.cleanup.is_empty());
/// assert_eq!(marker.query, r#"SELECT (CAST("w" AS DOUBLE PRECISION) * 2.0) AS d FROM w"#);
///
/// let call = "SELECT i, grad FROM gradient('SELECT SUM(w * w) FROM w', 'w.w') ORDER BY i";
/// let statements = engine_sql(call, Dialect::DuckDb, &catalog, &options).unwrap();
/// assert!(statements.setup.iter().all(|s| s.starts_with("CREATE TEMPORARY TABLE")));
/// assert!(statements.query.starts_with(r#"SELECT i, grad FROM "__ag_gradient"#));
/// assert_eq!(statements.setup.len(), statements.cleanup.len());
///
/// let e = engine_sql("SELECT grad(w % 0.5 * w, w) FROM w", Dialect::PostgreSql, &catalog, &options)
///     .unwrap_err();
/// assert!(e.to_string().contains("postgresql has no spelling for '%'"));
/// ```
pub fn engine_sql(
    sql: &str,
    dialect: Dialect,
    tables: Catalog,
    options: &AutogradOptions,
) -> Result<EngineStatements> {
    with_room(|| {
        if dialect == Dialect::DataFusion {
            return plan_err!(
                "engine statements are for other engines; a DataFusion session rewrites its \
                 statements itself (rewrite_sql)"
            );
        }
        let mut tables_made = Materialised {
            dialect,
            passes: vec![],
            setup: vec![],
            cleanup: vec![],
        };
        let query = rewrite_sql_in(sql, dialect, tables, options, &mut tables_made)?;
        if !tables_made.setup.is_empty() && creates_a_view(sql) {
            return plan_err!(
                "a view cannot keep a gradient in {dialect}: the tables its gradients are read \
                 from are dropped after the statement; create a table (CREATE TABLE … AS) instead"
            );
        }
        let Materialised {
            setup, mut cleanup, ..
        } = tables_made;
        cleanup.reverse();
        Ok(EngineStatements {
            setup,
            query,
            cleanup,
        })
    })
}

/// Whether `sql` is a `CREATE [OR REPLACE] [TEMPORARY] VIEW` (a view that
/// keeps a query, not its rows).
fn creates_a_view(sql: &str) -> bool {
    use datafusion_sql::sqlparser::dialect::GenericDialect;
    use datafusion_sql::sqlparser::tokenizer::{Token, Tokenizer};

    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return false;
    };
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(5)
        .map(|t| match t {
            Token::Word(w) => w.value.to_uppercase(),
            _ => String::new(),
        })
        .collect();
    let mut words = words.iter().map(String::as_str);
    if words.next() != Some("CREATE") {
        return false;
    }
    for word in words {
        match word {
            "OR" | "REPLACE" | "TEMP" | "TEMPORARY" => continue,
            "VIEW" => return true,
            _ => return false,
        }
    }
    false
}

/// Numbers the result tables of engine statements, so that their names never meet.
static MATERIALISED: AtomicUsize = AtomicUsize::new(0);

/// The gradients of one engine statement, each a temporary table.
struct Materialised {
    dialect: Dialect,
    /// The passes whose stages `setup` already creates.
    passes: Vec<Arc<Staged>>,
    setup: Vec<String>,
    /// In the order the tables are created.
    cleanup: Vec<String>,
}

impl Placement for Materialised {
    fn table(&mut self, staged: &Arc<Staged>, k: usize) -> Result<String> {
        let statements = staged_statements(staged, k, self.dialect)?;
        if !self.passes.iter().any(|p| Arc::ptr_eq(p, staged)) {
            self.passes.push(Arc::clone(staged));
            self.setup.extend(statements.setup);
            // staged_statements lists its drops last table first.
            self.cleanup.extend(statements.cleanup.into_iter().rev());
        }
        let writer = Writer::new(self.dialect);
        let name = writer.ident(&format!(
            "__ag_gradient{}",
            MATERIALISED.fetch_add(1, Ordering::Relaxed)
        ));
        self.setup.push(format!(
            "CREATE TEMPORARY TABLE {name} AS {}",
            statements.query
        ));
        self.cleanup.push(format!(
            "DROP TABLE IF EXISTS {}.{name}",
            writer.temporary_schema()
        ));
        Ok(name)
    }
}

/// Result `k` of `staged` as statements for `dialect`.
pub(crate) fn staged_statements(
    staged: &Staged,
    k: usize,
    dialect: Dialect,
) -> Result<EngineStatements> {
    let writer = Writer::new(dialect);
    let mut setup = vec![];
    let mut cleanup = vec![];
    for stage in &staged.stages {
        let name = writer.ident(&stage.name);
        let body = Query::new(&writer).positional(&stage.plan)?;
        setup.push(format!("CREATE TEMPORARY TABLE {name} AS {body}"));
        cleanup.push(format!(
            "DROP TABLE IF EXISTS {}.{name}",
            writer.temporary_schema()
        ));
    }
    cleanup.reverse();
    let query = Query::new(&writer).named(&staged.results[k])?;
    Ok(EngineStatements {
        setup,
        query,
        cleanup,
    })
}

/// What every query written for one engine shares.
struct Writer {
    dialect: Dialect,
    unparser: Box<dyn datafusion_sql::unparser::dialect::Dialect>,
}

impl Writer {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            unparser: dialect.unparser(),
        }
    }

    /// `name` as an identifier of the engine, quoted as its dialect quotes.
    fn ident(&self, name: &str) -> String {
        match self.unparser.identifier_quote_style(name) {
            Some(quote) => ast::Ident::with_quote(quote, name).to_string(),
            None => ast::Ident::new(name).to_string(),
        }
    }

    /// The schema the engine keeps temporary tables in.
    fn temporary_schema(&self) -> &'static str {
        match self.dialect {
            Dialect::PostgreSql => "pg_temp",
            _ => "temp",
        }
    }

    /// A host table's name as the loss named it: the parameter's table is
    /// planned under DataFusion's default catalog and schema, which the
    /// engine does not have.
    fn table(&self, table: &TableReference) -> String {
        match table {
            TableReference::Full {
                catalog, schema, ..
            } if catalog.as_ref() == "datafusion" && schema.as_ref() == "public" => {
                self.ident(table.table())
            }
            TableReference::Full {
                catalog,
                schema,
                table,
            } => format!(
                "{}.{}.{}",
                self.ident(catalog),
                self.ident(schema),
                self.ident(table)
            ),
            TableReference::Partial { schema, table } => {
                format!("{}.{}", self.ident(schema), self.ident(table))
            }
            TableReference::Bare { table } => self.ident(table),
        }
    }

    /// The error for a plan node or expression the engine is not written for.
    fn refuse<T>(&self, what: impl std::fmt::Display) -> Result<T> {
        plan_err!(
            "{} has no spelling for {what}, which the gradient's plan contains",
            self.dialect
        )
    }
}

/// Aggregate functions written the same, with the same meaning, everywhere.
const AGGREGATES: &[&str] = &["sum", "avg", "min", "max", "count"];

/// Window functions written the same, with the same meaning, everywhere.
const WINDOW_FUNCTIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// The name of column `i` of every relation written here.
fn position(i: usize) -> String {
    format!("c{i}")
}

/// One query being written: its common table expressions, one per plan node.
struct Query<'w> {
    writer: &'w Writer,
    tables: Vec<(String, String)>,
    names: HashMap<LogicalPlan, String>,
}

impl<'w> Query<'w> {
    fn new(writer: &'w Writer) -> Self {
        Self {
            writer,
            tables: vec![],
            names: HashMap::new(),
        }
    }

    /// `plan` as a query whose columns are named by position.
    fn positional(mut self, plan: &LogicalPlan) -> Result<String> {
        let name = self.relation(plan)?;
        let t = self.writer.ident("t");
        let select = self.select_list(&t, plan.schema().fields().len());
        let from = self.writer.ident(&name);
        Ok(self.finish(format!("SELECT {select} FROM {from} AS {t}")))
    }

    /// `plan` as a query whose columns have the plan's names; a DOUBLE
    /// column is cast to DOUBLE, as engines may widen or narrow what they
    /// compute (PostgreSQL's NUMERIC).
    fn named(mut self, plan: &LogicalPlan) -> Result<String> {
        let name = self.relation(plan)?;
        let t = self.writer.ident("t");
        let mut items = vec![];
        for (i, field) in plan.schema().fields().iter().enumerate() {
            let column = format!("{t}.{}", self.writer.ident(&position(i)));
            let value = if field.data_type() == &DataType::Float64 {
                let typed = cast(
                    Expr::Column(Column::new(Some("t"), position(i))),
                    DataType::Float64,
                );
                self.print(typed)?
            } else {
                column
            };
            items.push(format!("{value} AS {}", self.writer.ident(field.name())));
        }
        let from = self.writer.ident(&name);
        Ok(self.finish(format!("SELECT {} FROM {from} AS {t}", items.join(", "))))
    }

    fn finish(self, select: String) -> String {
        if self.tables.is_empty() {
            return select;
        }
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(name, body)| format!("{} AS ({body})", self.writer.ident(name)))
            .collect();
        format!("WITH {} {select}", tables.join(", "))
    }

    /// `alias.c0 AS c0, …` for a relation of `width` columns (a constant for
    /// one of none, which SQL cannot select).
    fn select_list(&self, alias: &str, width: usize) -> String {
        if width == 0 {
            return format!("1 AS {}", self.writer.ident("__ag_none"));
        }
        (0..width)
            .map(|i| {
                let c = self.writer.ident(&position(i));
                format!("{alias}.{c} AS {c}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The common table expression that computes `plan`, written once.
    #[recursive::recursive]
    fn relation(&mut self, plan: &LogicalPlan) -> Result<String> {
        if let Some(name) = self.names.get(plan) {
            return Ok(name.clone());
        }
        let body = match self.passes_through(plan) {
            Some(input) => return self.relation(input),
            None => self.body(plan)?,
        };
        let name = format!("__ag_q{}", self.tables.len());
        self.tables.push((name.clone(), body));
        self.names.insert(plan.clone(), name.clone());
        Ok(name)
    }

    /// The input of a node whose rows are its input's, column for column.
    fn passes_through<'p>(&self, plan: &'p LogicalPlan) -> Option<&'p LogicalPlan> {
        match plan {
            LogicalPlan::SubqueryAlias(alias) => Some(&alias.input),
            LogicalPlan::Sort(sort) if sort.fetch.is_none() => Some(&sort.input),
            LogicalPlan::Repartition(r) => Some(&r.input),
            // A projection of its input's columns, in order, under any names.
            LogicalPlan::Projection(p)
                if p.expr.len() == p.input.schema().fields().len()
                    && p.expr.iter().enumerate().all(|(i, e)| match e {
                        Expr::Column(c) => p.input.schema().maybe_index_of_column(c) == Some(i),
                        Expr::Alias(a) => matches!(a.expr.as_ref(), Expr::Column(c)
                            if p.input.schema().maybe_index_of_column(c) == Some(i)),
                        _ => false,
                    }) =>
            {
                Some(&p.input)
            }
            _ => None,
        }
    }

    /// The SELECT that computes `plan` from its inputs' tables.
    fn body(&mut self, plan: &LogicalPlan) -> Result<String> {
        let w = self.writer;
        let t = w.ident("t");
        match plan {
            LogicalPlan::TableScan(scan) => {
                if !scan.filters.is_empty() {
                    return w.refuse(format_args!("the scan of {} with filters", scan.table_name));
                }
                let source = scan.source.schema();
                let indices: Vec<usize> = match &scan.projection {
                    Some(p) => p.clone(),
                    None => (0..source.fields().len()).collect(),
                };
                let stage = StageSource::of(&scan.source);
                let from = match stage {
                    Some(stage) => w.ident(stage.name()),
                    None => w.table(&scan.table_name),
                };
                let items: Vec<String> = indices
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| {
                        let field = source.field(i);
                        let value = match stage {
                            // A stage's columns are named by position.
                            Some(_) => format!("{t}.{}", w.ident(&position(i))),
                            // SQLite keeps what a column was given; a DOUBLE
                            // column is read as one.
                            None if w.dialect == Dialect::Sqlite
                                && field.data_type() == &DataType::Float64 =>
                            {
                                format!("CAST({t}.{} AS DOUBLE)", w.ident(field.name()))
                            }
                            None => format!("{t}.{}", w.ident(field.name())),
                        };
                        format!("{value} AS {}", w.ident(&position(j)))
                    })
                    .collect();
                let items = if items.is_empty() {
                    self.select_list(&t, 0)
                } else {
                    items.join(", ")
                };
                let limit = match scan.fetch {
                    Some(n) => format!(" LIMIT {n}"),
                    None => String::new(),
                };
                Ok(format!("SELECT {items} FROM {from} AS {t}{limit}"))
            }
            LogicalPlan::Projection(projection) => {
                let input = self.relation(&projection.input)?;
                let scope = [("t", projection.input.schema().as_ref())];
                let mut items = vec![];
                for (i, e) in projection.expr.iter().enumerate() {
                    items.push(format!(
                        "{} AS {}",
                        self.expr(e, &scope)?,
                        w.ident(&position(i))
                    ));
                }
                let items = if items.is_empty() {
                    self.select_list(&t, 0)
                } else {
                    items.join(", ")
                };
                Ok(format!("SELECT {items} FROM {} AS {t}", w.ident(&input)))
            }
            LogicalPlan::Filter(filter) => {
                let input = self.relation(&filter.input)?;
                let scope = [("t", filter.input.schema().as_ref())];
                let predicate = self.expr(&filter.predicate, &scope)?;
                let select = self.select_list(&t, plan.schema().fields().len());
                Ok(format!(
                    "SELECT {select} FROM {} AS {t} WHERE {predicate}",
                    w.ident(&input)
                ))
            }
            LogicalPlan::Window(window) => {
                let input = self.relation(&window.input)?;
                let width = window.input.schema().fields().len();
                let scope = [("t", window.input.schema().as_ref())];
                let mut items = vec![];
                if width > 0 {
                    items.push(self.select_list(&t, width));
                }
                for (i, e) in window.window_expr.iter().enumerate() {
                    let typed = typed_like(e, plan.schema().field(width + i).data_type());
                    items.push(format!(
                        "{} AS {}",
                        self.expr(&typed, &scope)?,
                        w.ident(&position(width + i))
                    ));
                }
                Ok(format!(
                    "SELECT {} FROM {} AS {t}",
                    items.join(", "),
                    w.ident(&input)
                ))
            }
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.relation(&aggregate.input)?;
                let scope = [("t", aggregate.input.schema().as_ref())];
                let mut items = vec![];
                let mut keys = vec![];
                for e in &aggregate.group_expr {
                    if matches!(e, Expr::GroupingSet(_)) {
                        return w.refuse("grouping sets");
                    }
                    keys.push(self.expr(e, &scope)?);
                }
                for (i, key) in keys.iter().enumerate() {
                    items.push(format!("{key} AS {}", w.ident(&position(i))));
                }
                let n = keys.len();
                for (i, e) in aggregate.aggr_expr.iter().enumerate() {
                    let typed = typed_like(e, plan.schema().field(n + i).data_type());
                    items.push(format!(
                        "{} AS {}",
                        self.expr(&typed, &scope)?,
                        w.ident(&position(n + i))
                    ));
                }
                let items = if items.is_empty() {
                    self.select_list(&t, 0)
                } else {
                    items.join(", ")
                };
                let group = if keys.is_empty() {
                    String::new()
                } else {
                    format!(" GROUP BY {}", keys.join(", "))
                };
                Ok(format!(
                    "SELECT {items} FROM {} AS {t}{group}",
                    w.ident(&input)
                ))
            }
            LogicalPlan::Join(join) => {
                let left = self.relation(&join.left)?;
                let right = self.relation(&join.right)?;
                let (l, r) = (w.ident("l"), w.ident("r"));
                let scopes = [
                    ("l", join.left.schema().as_ref()),
                    ("r", join.right.schema().as_ref()),
                ];
                let mut conditions = vec![];
                for (a, b) in &join.on {
                    let (a, b) = (self.expr(a, &scopes)?, self.expr(b, &scopes)?);
                    conditions.push(match join.null_equality {
                        datafusion_common::NullEquality::NullEqualsNothing => {
                            format!("{a} = {b}")
                        }
                        datafusion_common::NullEquality::NullEqualsNull => {
                            format!("{a} IS NOT DISTINCT FROM {b}")
                        }
                    });
                }
                if let Some(filter) = &join.filter {
                    conditions.push(format!("({})", self.expr(filter, &scopes)?));
                }
                let condition = if conditions.is_empty() {
                    "1 = 1".to_string()
                } else {
                    conditions.join(" AND ")
                };
                let (left_width, right_width) = (
                    join.left.schema().fields().len(),
                    join.right.schema().fields().len(),
                );
                let both = |this: &Self| {
                    let mut items = vec![];
                    for i in 0..left_width {
                        items.push(format!(
                            "{l}.{} AS {}",
                            w.ident(&position(i)),
                            w.ident(&position(i))
                        ));
                    }
                    for i in 0..right_width {
                        items.push(format!(
                            "{r}.{} AS {}",
                            w.ident(&position(i)),
                            w.ident(&position(left_width + i))
                        ));
                    }
                    if items.is_empty() {
                        this.select_list(&l, 0)
                    } else {
                        items.join(", ")
                    }
                };
                let (lt, rt) = (w.ident(&left), w.ident(&right));
                let keyword = match join.join_type {
                    JoinType::Inner if conditions.is_empty() => {
                        return Ok(format!(
                            "SELECT {} FROM {lt} AS {l} CROSS JOIN {rt} AS {r}",
                            both(self)
                        ))
                    }
                    JoinType::Inner => "INNER JOIN",
                    JoinType::Left => "LEFT OUTER JOIN",
                    JoinType::Right => "RIGHT OUTER JOIN",
                    JoinType::Full => "FULL OUTER JOIN",
                    JoinType::LeftSemi
                    | JoinType::LeftAnti
                    | JoinType::RightSemi
                    | JoinType::RightAnti => {
                        // The rows of the kept side with (or without) a match on the other.
                        let not = match join.join_type {
                            JoinType::LeftAnti | JoinType::RightAnti => "NOT ",
                            _ => "",
                        };
                        let (kept, kept_alias, width, other, other_alias) = match join.join_type {
                            JoinType::LeftSemi | JoinType::LeftAnti => {
                                (&lt, &l, left_width, &rt, &r)
                            }
                            _ => (&rt, &r, right_width, &lt, &l),
                        };
                        return Ok(format!(
                            "SELECT {} FROM {kept} AS {kept_alias} WHERE {not}EXISTS (SELECT 1 FROM \
                             {other} AS {other_alias} WHERE {condition})",
                            self.select_list(kept_alias, width)
                        ));
                    }
                    other => return w.refuse(format_args!("the join type {other}")),
                };
                if join.null_aware {
                    return w.refuse("a null-aware anti join");
                }
                Ok(format!(
                    "SELECT {} FROM {lt} AS {l} {keyword} {rt} AS {r} ON {condition}",
                    both(self)
                ))
            }
            LogicalPlan::Union(union) => {
                let width = plan.schema().fields().len();
                let mut branches = vec![];
                for input in &union.inputs {
                    let name = self.relation(input)?;
                    branches.push(format!(
                        "SELECT {} FROM {} AS {t}",
                        self.select_list(&t, width),
                        w.ident(&name)
                    ));
                }
                Ok(branches.join(" UNION ALL "))
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let name = self.relation(input)?;
                let select = self.select_list(&t, plan.schema().fields().len());
                Ok(format!(
                    "SELECT DISTINCT {select} FROM {} AS {t}",
                    w.ident(&name)
                ))
            }
            LogicalPlan::Sort(sort) => {
                let input = self.relation(&sort.input)?;
                let order = self.order_by(&sort.expr, sort.input.schema())?;
                let select = self.select_list(&t, plan.schema().fields().len());
                let limit = sort
                    .fetch
                    .map(|n| format!(" LIMIT {n}"))
                    .unwrap_or_default();
                Ok(format!(
                    "SELECT {select} FROM {} AS {t} ORDER BY {order}{limit}",
                    w.ident(&input)
                ))
            }
            LogicalPlan::Limit(limit) => {
                let (skip, fetch) = match (limit.get_skip_type()?, limit.get_fetch_type()?) {
                    (SkipType::Literal(skip), FetchType::Literal(fetch)) => (skip, fetch),
                    _ => return w.refuse("a LIMIT or OFFSET that is not a number"),
                };
                let (input, order) = match limit.input.as_ref() {
                    LogicalPlan::Sort(sort) => (
                        self.relation(&sort.input)?,
                        format!(
                            " ORDER BY {}",
                            self.order_by(&sort.expr, sort.input.schema())?
                        ),
                    ),
                    other => (self.relation(other)?, String::new()),
                };
                let select = self.select_list(&t, plan.schema().fields().len());
                // LIMIT -1 is "no limit" in SQLite and DuckDB; PostgreSQL reads LIMIT ALL.
                let fetch = match (fetch, w.dialect) {
                    (Some(n), _) => format!(" LIMIT {n}"),
                    (None, _) if skip == 0 => String::new(),
                    (None, Dialect::PostgreSql) => " LIMIT ALL".to_string(),
                    (None, _) => " LIMIT -1".to_string(),
                };
                let offset = if skip > 0 {
                    format!(" OFFSET {skip}")
                } else {
                    String::new()
                };
                Ok(format!(
                    "SELECT {select} FROM {} AS {t}{order}{fetch}{offset}",
                    w.ident(&input)
                ))
            }
            LogicalPlan::EmptyRelation(empty) => {
                let items: Vec<String> = empty
                    .schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let null = cast(
                            Expr::Literal(datafusion_common::ScalarValue::Null, None),
                            f.data_type().clone(),
                        );
                        Ok(format!(
                            "{} AS {}",
                            self.print(null)?,
                            w.ident(&position(i))
                        ))
                    })
                    .collect::<Result<_>>()?;
                let items = if items.is_empty() {
                    self.select_list(&t, 0)
                } else {
                    items.join(", ")
                };
                let rows = if empty.produce_one_row {
                    ""
                } else {
                    " WHERE 1 = 0"
                };
                Ok(format!("SELECT {items}{rows}"))
            }
            LogicalPlan::Values(values) => {
                let empty = DFSchema::empty();
                let mut rows = vec![];
                for row in &values.values {
                    let mut items = vec![];
                    for (i, (e, field)) in row.iter().zip(values.schema.fields()).enumerate() {
                        let typed = cast(e.clone(), field.data_type().clone());
                        items.push(format!(
                            "{} AS {}",
                            self.expr(&typed, &[("t", &empty)])?,
                            w.ident(&position(i))
                        ));
                    }
                    rows.push(format!("SELECT {}", items.join(", ")));
                }
                if rows.is_empty() {
                    return w.refuse("an empty VALUES list");
                }
                Ok(rows.join(" UNION ALL "))
            }
            other => w.refuse(format_args!("the plan node {}", other.display())),
        }
    }

    /// `ORDER BY` items over a relation read as `t`.
    fn order_by(&mut self, sort: &[SortExpr], schema: &DFSchema) -> Result<String> {
        let scope = [("t", schema)];
        let mut items = vec![];
        for s in sort {
            let direction = if s.asc { "ASC" } else { "DESC" };
            let nulls = if s.nulls_first { "FIRST" } else { "LAST" };
            items.push(format!(
                "{} {direction} NULLS {nulls}",
                self.expr(&s.expr, &scope)?
            ));
        }
        Ok(items.join(", "))
    }

    /// `e`, an expression over the relations `scopes` (alias, schema) reads,
    /// as the engine writes it: DataFusion's implicit conversions explicit,
    /// functions spelled as the engine spells them, every column read by
    /// position through its relation's alias and every subquery a table of
    /// this query.
    fn expr(&mut self, e: &Expr, scopes: &[(&str, &DFSchema)]) -> Result<String> {
        let w = self.writer;
        let mut merged = DFSchema::empty();
        for (_, schema) in scopes {
            merged.merge(schema);
        }
        let e = formed(e.clone())?.unalias_nested().data;
        let e = e.rewrite(&mut TypeCoercionRewriter::new(&merged))?.data;
        let e = e.transform_up(|e| Ok(fold_literal_cast(e)))?.data;
        let e = e
            .transform_up(|e| match &e {
                Expr::AggregateFunction(a) => {
                    let name = a.func.name();
                    if AGGREGATES.contains(&name) {
                        Ok(Transformed::no(e))
                    } else {
                        w.refuse(format_args!("the aggregate function '{name}'"))
                    }
                }
                Expr::WindowFunction(f) => {
                    let name = f.fun.name();
                    if WINDOW_FUNCTIONS.contains(&name) {
                        Ok(Transformed::no(e))
                    } else {
                        w.refuse(format_args!("the window function '{name}'"))
                    }
                }
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                    Ok(Transformed::no(e))
                }
                Expr::OuterReferenceColumn(..) => {
                    w.refuse(format_args!("a correlated subquery (it reads `{e}`)"))
                }
                _ => spell(e, &merged, w.dialect),
            })?
            .data;
        let e = e
            .transform_up(|e| match e {
                Expr::Column(c) => {
                    for (alias, schema) in scopes {
                        if let Some(i) = schema.maybe_index_of_column(&c) {
                            return Ok(Transformed::yes(Expr::Column(Column::new(
                                Some(*alias),
                                position(i),
                            ))));
                        }
                    }
                    plan_err!("column {c} not found where the gradient's plan reads it")
                }
                Expr::ScalarSubquery(s) => {
                    Ok(Transformed::yes(Expr::ScalarSubquery(self.subquery(s)?)))
                }
                Expr::Exists(mut exists) => {
                    exists.subquery = self.subquery(exists.subquery)?;
                    Ok(Transformed::yes(Expr::Exists(exists)))
                }
                Expr::InSubquery(mut in_subquery) => {
                    in_subquery.subquery = self.subquery(in_subquery.subquery)?;
                    Ok(Transformed::yes(Expr::InSubquery(in_subquery)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        self.print(e)
    }

    /// An uncorrelated subquery as a read of its table in this query.
    fn subquery(&mut self, subquery: Subquery) -> Result<Subquery> {
        if !subquery.outer_ref_columns.is_empty() {
            return self.writer.refuse(format_args!(
                "a correlated subquery (`{}`)",
                subquery.subquery.display()
            ));
        }
        let name = self.relation(&subquery.subquery)?;
        let fields: Vec<Field> = subquery
            .subquery
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Field::new(position(i), f.data_type().clone(), true))
            .collect();
        let source = LogicalTableSource::new(Arc::new(Schema::new(fields)));
        let scan = LogicalPlanBuilder::scan(name, Arc::new(source), None)?.build()?;
        Ok(Subquery {
            subquery: Arc::new(scan),
            outer_ref_columns: vec![],
            spans: subquery.spans,
        })
    }

    /// Prints an expression already spelled for the engine.
    fn print(&self, e: Expr) -> Result<String> {
        let w = self.writer;
        let e = spell_non_finite(typed_nulls(e)?, w.dialect)?;
        let mut ast = Unparser::new(w.unparser.as_ref())
            .with_pretty(false)
            .expr_to_sql(&e)?;
        if w.dialect.non_finite() == NonFinite::Overflow {
            write_infinities_as_overflow(&mut ast);
        }
        drop_redundant_parentheses(&mut ast);
        separate_signs(&mut ast);
        Ok(ast.to_string())
    }
}

/// `e`, an aggregate or window function, cast to the type DataFusion gives
/// it where that is a number: engines widen sums (DuckDB's HUGEINT) and
/// averages (PostgreSQL's NUMERIC).
fn typed_like(e: &Expr, data_type: &DataType) -> Expr {
    let e = e.clone().unalias_nested().data;
    if data_type.is_numeric() && !data_type.is_decimal() {
        cast(e, data_type.clone())
    } else {
        e
    }
}

/// The query of a view from the statement that created it, as engines keep
/// it (DuckDB's `duckdb_views()`, SQLite's `sqlite_schema`): `CREATE VIEW v
/// AS q` gives `q`, and `CREATE VIEW v (a, b) AS q` the query with the
/// columns renamed, `SELECT * FROM (q) AS v (a, b)`. Text that is not one
/// `CREATE VIEW` statement is an error.
///
/// ```
/// use datafusion_autograd::view_query;
///
/// assert_eq!(view_query("CREATE VIEW v AS SELECT w * 2 AS w2 FROM w;").unwrap(), "SELECT w * 2 AS w2 FROM w");
/// assert_eq!(
///     view_query("create view v(a) as select w from w").unwrap(),
///     "SELECT * FROM (SELECT w FROM w) AS v (a)"
/// );
/// assert!(view_query("SELECT 1").is_err());
/// ```
pub fn view_query(sql: &str) -> Result<String> {
    use datafusion_sql::sqlparser::dialect::GenericDialect;
    use datafusion_sql::sqlparser::parser::Parser;

    let statements = Parser::new(&GenericDialect {})
        .with_recursion_limit(super::plan::MAX_SQL_NESTING)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| datafusion_common::plan_datafusion_err!("invalid view definition: {e}"))?;
    match statements.as_slice() {
        [ast::Statement::CreateView(view)] if view.columns.is_empty() => Ok(view.query.to_string()),
        [ast::Statement::CreateView(view)] => {
            let columns: Vec<String> = view.columns.iter().map(|c| c.name.to_string()).collect();
            let name = view.name.0.last().map(|part| part.to_string());
            Ok(format!(
                "SELECT * FROM ({}) AS {} ({})",
                view.query,
                name.unwrap_or_else(|| "v".to_string()),
                columns.join(", ")
            ))
        }
        _ => plan_err!("expected one CREATE VIEW statement, found `{sql}`"),
    }
}
