//! What a place in a SQL statement's text can see: the common table
//! expressions in scope, and the tables of the innermost `FROM` — what the
//! SQL bridge needs to plan `grad((SELECT l FROM loss), w)` the way the
//! statement around it would: the loss with the statement's CTEs, the
//! column's table by the statement's names and aliases.

use std::ops::{ControlFlow, Range};

use datafusion_common::{plan_datafusion_err, Result};
use datafusion_sql::sqlparser::ast::{
    Cte, Query, Select, SetExpr, Spanned, TableFactor, TableWithJoins, Visit, Visitor,
};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::Location;

use super::plan::MAX_SQL_NESTING;

/// A table named in a `FROM`: its name as written, and the alias it goes by.
#[derive(Clone, Debug)]
pub(crate) struct FromTable {
    /// The table's name as written (`public.w`), or `None` for a derived table.
    pub name: Option<String>,
    /// The alias, as the planner reads it.
    pub alias: Option<String>,
    /// The alias as written.
    pub alias_text: Option<String>,
    /// Where the table factor is, name and alias, in the statement's text.
    pub span: Range<usize>,
}

struct QueryScope {
    span: Range<usize>,
    recursive: bool,
    /// `name AS (query)`, as written, in order.
    ctes: Vec<(String, String)>,
    /// Each of `ctes`: its name as the planner reads it, and where its query
    /// is (between its parentheses) when that could be told from the text.
    definitions: Vec<(String, Option<Range<usize>>)>,
}

struct SelectScope {
    span: Range<usize>,
    tables: Vec<FromTable>,
}

/// The scopes of one statement's text.
pub(crate) struct Scopes {
    queries: Vec<QueryScope>,
    selects: Vec<SelectScope>,
}

impl Scopes {
    /// The scopes of `sql`, which must parse as one statement; `offset`
    /// converts the parser's locations to byte offsets.
    pub fn of(sql: &str, offset: &dyn Fn(Location) -> usize) -> Result<Self> {
        let statements = Parser::new(&GenericDialect {})
            .with_recursion_limit(MAX_SQL_NESTING)
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statements())
            .map_err(|e| plan_datafusion_err!("cannot read the SQL text: {e}"))?;
        let mut collector = Collector {
            sql,
            offset,
            scopes: Scopes {
                queries: vec![],
                selects: vec![],
            },
        };
        let _ = statements.visit(&mut collector);
        Ok(collector.scopes)
    }

    /// The `WITH` clause a query at byte `at` sees (empty when none), and
    /// whether one of the queries around it is recursive.
    pub fn with_clause(&self, at: usize) -> (String, bool) {
        let mut ctes: Vec<&(String, String)> = vec![];
        let mut recursive = false;
        let mut enclosing: Vec<&QueryScope> = self
            .queries
            .iter()
            .filter(|q| q.span.contains(&at))
            .collect();
        enclosing.sort_by_key(|q| std::cmp::Reverse(q.span.len()));
        for query in enclosing {
            recursive |= query.recursive;
            for cte in &query.ctes {
                // An inner definition hides an outer one of the same name.
                ctes.retain(|(name, _)| !name.eq_ignore_ascii_case(&cte.0));
                ctes.push(cte);
            }
        }
        if ctes.is_empty() {
            return (String::new(), recursive);
        }
        let texts: Vec<&str> = ctes.iter().map(|(_, text)| text.as_str()).collect();
        (format!("WITH {} ", texts.join(", ")), recursive)
    }

    /// Where the query of the common table expression `name` (as the
    /// planner reads names) that a query at byte `at` sees is written: the
    /// text between its parentheses; None when none is in scope there, or
    /// its parentheses could not be told from the text.
    pub fn definition(&self, at: usize, name: &str) -> Option<Range<usize>> {
        let mut enclosing: Vec<&QueryScope> = self
            .queries
            .iter()
            .filter(|q| q.span.contains(&at))
            .collect();
        // Innermost first: an inner definition hides an outer one.
        enclosing.sort_by_key(|q| q.span.len());
        enclosing
            .into_iter()
            .find_map(|q| q.definitions.iter().find(|(n, _)| n == name))
            .and_then(|(_, body)| body.clone())
    }

    /// The tables of the innermost `SELECT` around byte `at`.
    pub fn tables_at(&self, at: usize) -> &[FromTable] {
        self.selects
            .iter()
            .filter(|s| s.span.contains(&at))
            .min_by_key(|s| s.span.len())
            .map_or(&[], |s| s.tables.as_slice())
    }
}

struct Collector<'a> {
    sql: &'a str,
    offset: &'a dyn Fn(Location) -> usize,
    scopes: Scopes,
}

impl Collector<'_> {
    fn range(&self, node: &impl Spanned) -> Range<usize> {
        let span = node.span();
        (self.offset)(span.start)..(self.offset)(span.end)
    }

    /// The text between the parentheses around `cte`'s query: from where its
    /// query starts to its closing parenthesis, where nothing but blanks
    /// stands between the query and an opening parenthesis right after `AS`
    /// or `MATERIALIZED`.
    fn body(&self, cte: &Cte) -> Option<Range<usize>> {
        let start = (self.offset)(cte.query.span().start);
        let end = (self.offset)(cte.closing_paren_token.0.span.start);
        let before = self.sql.get(..start)?.trim_end().strip_suffix('(')?;
        let word = before.trim_end();
        let opened = ["AS", "MATERIALIZED"].iter().any(|keyword| {
            let Some(cut) = word.len().checked_sub(keyword.len()) else {
                return false;
            };
            match (word.get(..cut), word.get(cut..)) {
                (Some(head), Some(tail)) => {
                    tail.eq_ignore_ascii_case(keyword)
                        && !head.ends_with(|c: char| c.is_alphanumeric() || c == '_')
                }
                _ => false,
            }
        });
        (opened && start <= end).then_some(start..end)
    }

    fn selects(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let span = self.range(select.as_ref());
                let tables = from_tables(select, &|f: &TableFactor| self.range(f));
                self.scopes.selects.push(SelectScope { span, tables });
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.selects(left);
                self.selects(right);
            }
            _ => {}
        }
    }
}

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let span = self.range(query);
        let (ctes, definitions, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| {
                        let range = self.range(cte);
                        let text = self.sql.get(range).unwrap_or_default().to_string();
                        (cte.alias.name.value.clone(), text)
                    })
                    .collect(),
                with.cte_tables
                    .iter()
                    .map(|cte| (normalized(&cte.alias.name), self.body(cte)))
                    .collect(),
                with.recursive,
            ),
            None => (vec![], vec![], false),
        };
        self.scopes.queries.push(QueryScope {
            span,
            recursive,
            ctes,
            definitions,
        });
        self.selects(&query.body);
        ControlFlow::Continue(())
    }
}

fn from_tables(select: &Select, range: &dyn Fn(&TableFactor) -> Range<usize>) -> Vec<FromTable> {
    let mut out = vec![];
    for TableWithJoins { relation, joins } in &select.from {
        out.push(from_table(relation, range(relation)));
        out.extend(
            joins
                .iter()
                .map(|j| from_table(&j.relation, range(&j.relation))),
        );
    }
    out
}

fn from_table(factor: &TableFactor, span: Range<usize>) -> FromTable {
    let (name, alias) = match factor {
        TableFactor::Table { name, alias, .. } => (Some(name.to_string()), alias.as_ref()),
        TableFactor::Derived { alias, .. } | TableFactor::NestedJoin { alias, .. } => {
            (None, alias.as_ref())
        }
        _ => (None, None),
    };
    FromTable {
        name,
        alias: alias.map(|a| normalized(&a.name)),
        alias_text: alias.map(|a| a.name.to_string()),
        span,
    }
}

/// An identifier as DataFusion's planner reads it: unquoted ones in lower case.
fn normalized(ident: &datafusion_sql::sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        None => ident.value.to_lowercase(),
        Some(_) => ident.value.clone(),
    }
}
