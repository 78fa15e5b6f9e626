//! Differentiation before planning, for hosts that never call `simplify`.
//!
//! [`rewrite_sql`] replaces every `grad`/`jvp`/`vjp` call in a SQL text by
//! its derivative, and every `gradient(…)` table function call by the query
//! that computes it, both formed by the same engine, and leaves every other
//! character of the text as it was. The host then plans plain SQL.

use std::ops::Range;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field};
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{plan_datafusion_err, plan_err, Column, DFSchema, Result, TableReference};
use datafusion_expr::expr::ScalarFunction;
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::dialect::Dialect;
use super::emit::to_dialect_sql;
use super::gradient::{plan_gradients, plan_gradients_of, plan_loss, staged_to_sql};
use super::plan::plan_query;
use super::scopes::{FromTable, Scopes};
use super::{formed_to_sql, plan_scalar};
use crate::catalog::{Catalog, Relation};
use crate::error::fail;
use crate::forward::marker::{expand_markers, Derivative};
use crate::forward::reals::ColumnTypes;
use crate::forward::udf::{given_values, stop_gradient_udf, with_derivative};
use crate::options::AutogradOptions;
use crate::relational::Staged;
use crate::stack::with_room;

/// The table function's name, and the name its result goes by unless the
/// query gives it another.
const GRADIENT: &str = "gradient";

/// `sql` with every marker call replaced by its derivative, and every
/// `gradient('<loss query>', '<table>.<column>')` by the query that computes
/// it, each in parentheses.
///
/// Calls are found by SQL tokens, so string literals, comments and quoted
/// identifiers that merely contain the word `grad` are left alone, and any
/// statement DataFusion accepts (queries, DML, DDL, `EXPLAIN`) keeps its text.
/// Nested markers are differentiated innermost first. Column types are not
/// known for markers, so every column inside a derivative is read as DOUBLE;
/// `gradient` plans its loss query over the relations `tables` gives.
///
/// ```
/// use datafusion_autograd::rewrite_sql;
///
/// let sql = "SELECT x, grad(x * x, x) AS d FROM t -- grad(y, y)";
/// assert_eq!(
///     rewrite_sql(sql, &|_| Ok(None), &Default::default()).unwrap(),
///     "SELECT x, (CAST(x AS DOUBLE) * 2.0) AS d FROM t -- grad(y, y)"
/// );
/// ```
pub fn rewrite_sql(sql: &str, tables: Catalog, options: &AutogradOptions) -> Result<String> {
    rewrite_sql_with(sql, tables, options, &mut SqlText)
}

/// How a host takes the gradients of whole queries the bridge forms.
pub trait Placement {
    /// The table factor that stands for result `k` of `staged` (every row of
    /// a parameter's table, its columns and `grad`; or, after the gradients,
    /// the loss's row): a query in parentheses, or the name of a table the
    /// host registers.
    fn table(&mut self, staged: &Arc<Staged>, k: usize) -> Result<String>;

    /// Whether the statement's own reads of a loss it differentiates are to
    /// read the loss's row where the pass keeps it (a result after the
    /// gradients) instead of computing the loss a second time: for a host
    /// whose tables of one pass share its stages. A loss is served so where
    /// it is a common table expression of one column that the marker's
    /// subquery reads whole (`grad((SELECT l FROM loss), w)`): the
    /// expression's query is replaced by a read of that table.
    fn serves_the_loss(&self) -> bool {
        false
    }
}

/// Gradients as SQL text the host computes itself.
struct SqlText;

impl Placement for SqlText {
    fn table(&mut self, staged: &Arc<Staged>, k: usize) -> Result<String> {
        Ok(format!("({})", staged_to_sql(staged, k)?))
    }
}

/// [`rewrite_sql`], with every gradient the text asks for placed by `place`.
pub fn rewrite_sql_with(
    sql: &str,
    tables: Catalog,
    options: &AutogradOptions,
    place: &mut dyn Placement,
) -> Result<String> {
    rewrite_sql_in(sql, Dialect::DataFusion, tables, options, place)
}

/// [`rewrite_sql_with`] for a statement of the engine `dialect`: every
/// derivative a marker forms is written as that engine spells it (or is an
/// error naming what it has no spelling for); the rest of the text is kept.
pub(crate) fn rewrite_sql_in(
    sql: &str,
    dialect: Dialect,
    tables: Catalog,
    options: &AutogradOptions,
    place: &mut dyn Placement,
) -> Result<String> {
    with_room(|| {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| plan_datafusion_err!("cannot read the SQL text: {e}"))?;
        let offsets = ByteOffsets::new(sql);
        let calls = calls(&tokens)?;
        let mut whole = WholeQuery::new(sql, &offsets, tables, options, dialect);
        let mut pieces = vec![];
        for call in &calls {
            let start = offsets.of(call.start);
            let end = offsets.of(call.end);
            let text = match &call.kind {
                CallKind::Marker if call.reads_a_query => {
                    Piece::Deferred(whole.marker(start, end, place)?)
                }
                CallKind::Marker => Piece::Text(format!(
                    "({})",
                    expand_sql(&sql[start..end], options, dialect)?
                )),
                CallKind::Gradient { loss, wrt, aliased } => {
                    let staged = Arc::new(plan_gradients(loss, &[wrt.as_str()], tables, options)?);
                    let mut text = place.table(&staged, 0)?;
                    if !aliased {
                        text.push_str(" AS ");
                        text.push_str(GRADIENT);
                    }
                    Piece::Text(text)
                }
            };
            pieces.push((start, end, text));
        }
        let taken: Vec<Range<usize>> = pieces.iter().map(|(s, e, _)| *s..*e).collect();
        for (span, text) in whole.joins(place, &taken)? {
            pieces.push((span.start, span.end, Piece::Text(text)));
        }
        pieces.sort_by_key(|(start, ..)| *start);
        let mut out = String::with_capacity(sql.len());
        let mut copied = 0;
        for (start, end, piece) in pieces {
            out.push_str(&sql[copied..start]);
            match piece {
                Piece::Text(text) => out.push_str(&text),
                Piece::Deferred(k) => out.push_str(&whole.finish(k)?),
            }
            copied = end;
        }
        out.push_str(&sql[copied..]);
        Ok(out)
    })
}

/// What replaces a call: its text, or the number of a whole-query marker
/// whose text waits for the gradients.
enum Piece {
    Text(String),
    Deferred(usize),
}

/// A gradient a marker asks for.
struct Request {
    /// The loss's text: the marker's subquery under the `WITH` it sees.
    loss: String,
    /// The parameter, `"table.column"`.
    wrt: String,
    /// The `FROM` table it is read at, in `froms`.
    from: usize,
    /// Where the marker is in the statement.
    at: usize,
}

/// One marker's derivative as text, with placeholders for the subqueries
/// (`__ag_s<n>`, with their text) and for the derivatives (`__ag_s<n>_d`,
/// with the request whose column stands there).
struct Expanded {
    text: String,
    values: Vec<(String, String)>,
    derivatives: Vec<(String, usize)>,
}

/// The markers over whole queries of one statement, and the gradients they
/// ask for: one reverse pass per loss, for all its parameters.
struct WholeQuery<'a> {
    sql: &'a str,
    offsets: &'a ByteOffsets<'a>,
    tables: Catalog<'a>,
    options: &'a AutogradOptions,
    dialect: Dialect,
    scopes: Option<Scopes>,
    markers: Vec<Expanded>,
    /// The gradients asked for.
    requests: Vec<Request>,
    /// The `FROM` tables gradients are joined to, with their columns.
    froms: Vec<(FromTable, Vec<String>)>,
}

impl<'a> WholeQuery<'a> {
    fn new(
        sql: &'a str,
        offsets: &'a ByteOffsets<'a>,
        tables: Catalog<'a>,
        options: &'a AutogradOptions,
        dialect: Dialect,
    ) -> Self {
        Self {
            sql,
            offsets,
            tables,
            options,
            dialect,
            scopes: None,
            markers: vec![],
            requests: vec![],
            froms: vec![],
        }
    }

    fn scopes(&mut self) -> Result<&Scopes> {
        if self.scopes.is_none() {
            let offsets = self.offsets;
            self.scopes = Some(Scopes::of(self.sql, &|l| offsets.of(l))?);
        }
        Ok(self.scopes.as_ref().expect("just made"))
    }

    /// Reads the marker at `start..end` of the text, whose expression holds
    /// subqueries, and returns its number. The gradients inside those
    /// subqueries are placed by `place` in another engine's statement, and
    /// written out as text in DataFusion's.
    fn marker(&mut self, start: usize, end: usize, place: &mut dyn Placement) -> Result<usize> {
        let call = &self.sql[start..end];
        let subqueries = subqueries(call)?;
        let mut text = String::new();
        let mut copied = 0;
        let mut values = vec![];
        for (n, range) in subqueries.iter().enumerate() {
            text.push_str(&call[copied..range.start]);
            let placeholder = format!("__ag_s{}_{n}", self.markers.len());
            text.push_str(&placeholder);
            // Markers inside the subquery, written out like any other.
            let inner = strip_parentheses(&call[range.clone()]);
            let inner = match self.dialect {
                Dialect::DataFusion => rewrite_sql(inner, self.tables, self.options)?,
                dialect => rewrite_sql_in(inner, dialect, self.tables, self.options, place)?,
            };
            values.push((placeholder, format!("({inner})")));
            copied = range.end;
        }
        text.push_str(&call[copied..]);
        let (exprs, schema) = plan_scalar(&[&text])?;
        let expr = exprs.into_iter().next().expect("one expression planned");
        let Some((derivative, f)) = as_marker(&expr) else {
            return plan_err!(
                "a marker over a subquery must be a whole marker call, found `{call}`"
            );
        };
        let Expr::Column(column) = &f.args[1] else {
            return plan_err!(
                "the second argument of {} must be a column reference",
                derivative.usage()
            );
        };
        let nested = f.args[0].exists(|e| Ok(as_marker(e).is_some()))?;
        if nested {
            return fail!(
                UnsupportedOperation,
                "{} over a marker over a subquery asks for the second derivative of a whole \
                 query, which markers do not form; Hessian-vector products of a whole query: \
                 ag.hvp",
                derivative.usage()
            );
        }
        let wrt = f.args[1].clone();
        let table = self.table_of(column, start)?;
        let (with, recursive) = self.scopes()?.with_clause(start);
        let mut derivatives = vec![];
        let mut replacements = vec![];
        for ((placeholder, subquery), range) in values.iter().zip(&subqueries) {
            let loss = format!("{with}{}", strip_parentheses(&call[range.clone()]));
            let reads = match &table {
                Some((name, _)) => {
                    let plan = plan_query(&loss, self.tables)
                        .map_err(|e| e.context(format!("planning the subquery {subquery}")))?;
                    reads_table(&plan, name)?
                }
                None => false,
            };
            let value = Expr::Column(Column::from_name(placeholder));
            let replacement = match (&table, reads) {
                (Some((name, from)), true) => {
                    if recursive {
                        return plan_err!(
                            "a marker over a subquery inside a recursive query is not formed: \
                             the working table is not a table the gradient can read"
                        );
                    }
                    let d = format!("{placeholder}_d");
                    self.requests.push(Request {
                        loss,
                        wrt: format!("{name}.{}", column.name),
                        from: *from,
                        at: start,
                    });
                    derivatives.push((d.clone(), self.requests.len() - 1));
                    with_derivative(value, Expr::Column(Column::from_name(d)), wrt.clone())
                }
                _ => stop_gradient_udf().call(vec![value]),
            };
            replacements.push((placeholder.clone(), replacement));
        }
        let expr = expr
            .transform_up(|e| match &e {
                Expr::Column(c) => match replacements.iter().find(|(p, _)| *p == c.name) {
                    Some((_, r)) => Ok(Transformed::yes(r.clone())),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })?
            .data;
        let expanded = given_values(expand_markers(expr, ColumnTypes::Unknown, self.options)?)?;
        let text = match self.dialect {
            Dialect::DataFusion => formed_to_sql(&expanded)?,
            dialect => {
                // The derivatives' columns are DOUBLE, like the values'.
                let fields: Vec<Field> = derivatives
                    .iter()
                    .map(|(d, _)| Field::new(d, DataType::Float64, true))
                    .collect();
                let mut schema = schema;
                schema.merge(&DFSchema::from_unqualified_fields(
                    fields.into(),
                    Default::default(),
                )?);
                to_dialect_sql(&expanded, &schema, dialect)?
            }
        };
        self.markers.push(Expanded {
            text,
            values,
            derivatives,
        });
        Ok(self.markers.len() - 1)
    }

    /// The table `column` is a column of, at byte `at` of the statement: its
    /// name, and its place in `froms`; `None` when it comes from a derived
    /// table, a CTE or a view.
    fn table_of(&mut self, column: &Column, at: usize) -> Result<Option<(String, usize)>> {
        let tables = self.tables;
        let from: Vec<FromTable> = self.scopes()?.tables_at(at).to_vec();
        let mut candidates = vec![];
        for t in from {
            let Some(name) = &t.name else { continue };
            let reference = TableReference::parse_str(name);
            let refers = t
                .alias
                .clone()
                .unwrap_or_else(|| reference.table().to_string());
            let matches = match &column.relation {
                Some(q) => q.table() == refers,
                None => true,
            };
            if !matches {
                continue;
            }
            let Some(Relation::Table(schema)) = tables(&reference)? else {
                continue;
            };
            if schema.field_with_name(&column.name).is_err() {
                continue;
            }
            let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
            candidates.push((name.clone(), t, columns));
        }
        let (name, from, columns) = match candidates.len() {
            0 => return Ok(None),
            1 => candidates.pop().expect("one"),
            _ => {
                return plan_err!(
                "the column {column} is ambiguous: several tables of the FROM have it; qualify it"
            )
            }
        };
        let at = match self.froms.iter().position(|(f, _)| f.span == from.span) {
            Some(at) => at,
            None => {
                self.froms.push((from, columns));
                self.froms.len() - 1
            }
        };
        Ok(Some((name, at)))
    }

    /// The text that replaces each `FROM` table gradients are read at: the
    /// table, under its own name, with the gradients of its rows beside
    /// them, one column each — the gradient's own table where only one is
    /// read there, or the table joined to each gradient (one row per
    /// distinct row of the table: identical rows share one gradient). One
    /// reverse pass per loss. Where `place`
    /// serves a loss, the query of the common table expression the loss
    /// reads whole is replaced too, unless it holds text replaced otherwise
    /// (`taken`).
    fn joins(
        &self,
        place: &mut dyn Placement,
        taken: &[Range<usize>],
    ) -> Result<Vec<(Range<usize>, String)>> {
        let mut factors = vec![String::new(); self.requests.len()];
        let mut losses: Vec<&str> = self.requests.iter().map(|r| r.loss.as_str()).collect();
        losses.sort();
        losses.dedup();
        let mut served: Vec<(Range<usize>, String)> = vec![];
        for loss in losses {
            let asked: Vec<usize> = (0..self.requests.len())
                .filter(|&k| self.requests[k].loss == loss)
                .collect();
            let mut parameters: Vec<&str> = vec![];
            for &k in &asked {
                if !parameters.contains(&self.requests[k].wrt.as_str()) {
                    parameters.push(&self.requests[k].wrt);
                }
            }
            let planned = plan_loss(loss, self.tables)?;
            let definition = place
                .serves_the_loss()
                .then(|| self.definition_read_whole(&planned, self.requests[asked[0]].at))
                .flatten()
                .filter(|body| {
                    let meets = |r: &Range<usize>| r.start < body.end && body.start < r.end;
                    !taken.iter().any(meets)
                        && !self.froms.iter().any(|(f, _)| meets(&f.span))
                        && !served.iter().any(|(r, _)| meets(r))
                });
            let staged = Arc::new(plan_gradients_of(
                &planned,
                &parameters,
                self.tables,
                self.options,
                definition.is_some(),
            )?);
            for &k in &asked {
                let result = parameters
                    .iter()
                    .position(|p| *p == self.requests[k].wrt)
                    .expect("listed");
                factors[k] = place.table(&staged, result)?;
            }
            if let Some(body) = definition {
                if staged.results.len() > parameters.len() {
                    let table = place.table(&staged, parameters.len())?;
                    served.push((body, format!("SELECT * FROM {table}")));
                }
            }
        }
        let mut joins = vec![];
        for (f, (from, columns)) in self.froms.iter().enumerate() {
            let refers = match (&from.alias_text, &from.name) {
                (Some(alias), _) => alias.clone(),
                (None, Some(name)) => name.clone(),
                (None, None) => unreachable!("a base table has a name"),
            };
            let outer = from.alias_text.clone().unwrap_or_else(|| {
                quoted(TableReference::parse_str(from.name.as_deref().unwrap_or_default()).table())
            });
            let original = &self.sql[from.span.clone()];
            let asked: Vec<usize> = (0..self.requests.len())
                .filter(|k| self.requests[*k].from == f)
                .collect();
            if let [k] = asked.as_slice() {
                if names_the_table_alone(original, from) {
                    // A gradient's table holds every row of the table, all its
                    // columns and the row's gradient: read alone, it is the
                    // table the join below would make.
                    let columns: Vec<String> = columns
                        .iter()
                        .map(|name| format!("__ag_t.{}", quoted(name)))
                        .collect();
                    joins.push((
                        from.span.clone(),
                        format!(
                            "(SELECT {}, __ag_t.grad AS __ag_d{k} FROM {} AS __ag_t) AS {outer}",
                            columns.join(", "),
                            factors[*k]
                        ),
                    ));
                    continue;
                }
            }
            let mut selected = vec![format!("{refers}.*")];
            let mut joined = String::new();
            for &k in &asked {
                let factor = &factors[k];
                let g = format!("__ag_g{k}");
                let keys: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(c, name)| format!("__ag_t.{} AS __ag_c{c}", quoted(name)))
                    .collect();
                let on: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(c, name)| {
                        format!(
                            "({refers}.{} IS NOT DISTINCT FROM {g}.__ag_c{c})",
                            quoted(name)
                        )
                    })
                    .collect();
                joined.push_str(&format!(
                    " LEFT JOIN (SELECT DISTINCT {}, __ag_t.grad AS __ag_d FROM {factor} AS __ag_t) AS {g} ON {}",
                    keys.join(", "),
                    on.join(" AND ")
                ));
                selected.push(format!("{g}.__ag_d AS __ag_d{k}"));
            }
            joins.push((
                from.span.clone(),
                format!(
                    "(SELECT {} FROM {original}{joined}) AS {outer}",
                    selected.join(", ")
                ),
            ));
        }
        joins.extend(served);
        Ok(joins)
    }

    /// Where the query of the common table expression that `loss` (planned)
    /// reads whole is written, for the marker at byte `at`: a loss that is
    /// the one column of that expression's one-column relation, selected as
    /// it is (`SELECT l FROM loss`).
    fn definition_read_whole(&self, loss: &LogicalPlan, at: usize) -> Option<Range<usize>> {
        let LogicalPlan::Projection(projection) = loss else {
            return None;
        };
        let LogicalPlan::SubqueryAlias(alias) = projection.input.as_ref() else {
            return None;
        };
        let read_whole = match projection.expr.as_slice() {
            [Expr::Column(column)] => {
                alias.schema.fields().len() == 1 && alias.schema.field(0).name() == &column.name
            }
            _ => false,
        };
        if !read_whole || alias.alias.schema().is_some() {
            return None;
        }
        self.scopes.as_ref()?.definition(at, alias.alias.table())
    }

    /// The text of marker `k`, its placeholders replaced: subqueries by
    /// their text, derivatives by the column of the `FROM` table they were
    /// joined to it as.
    fn finish(&self, k: usize) -> Result<String> {
        let Expanded {
            text,
            values,
            derivatives,
        } = &self.markers[k];
        let tokens = Tokenizer::new(&GenericDialect {}, text)
            .tokenize()
            .map_err(|e| plan_datafusion_err!("cannot read the derivative's text: {e}"))?;
        let mut out = String::from("(");
        for token in tokens {
            // Placeholders are quoted where the engine's dialect quotes every name.
            let replaced = match &token {
                Token::Word(w) if w.value.starts_with("__ag_s") => values
                    .iter()
                    .find(|(p, _)| *p == w.value)
                    .map(|(_, v)| v.clone())
                    .or_else(|| {
                        let (_, r) = derivatives.iter().find(|(d, _)| *d == w.value)?;
                        let (from, _) = &self.froms[self.requests[*r].from];
                        let refers = from.alias_text.clone().unwrap_or_else(|| {
                            quoted(
                                TableReference::parse_str(from.name.as_deref().unwrap_or_default())
                                    .table(),
                            )
                        });
                        Some(format!("{refers}.__ag_d{r}"))
                    }),
                _ => None,
            };
            match replaced {
                Some(text) => out.push_str(&text),
                None => out.push_str(&token.to_string()),
            }
        }
        out.push(')');
        Ok(out)
    }
}

/// The derivative of one SQL marker call, as SQL, for a host that will plan it
/// against a schema unknown here.
fn expand_sql(call: &str, options: &AutogradOptions, dialect: Dialect) -> Result<String> {
    let (exprs, schema) = plan_scalar(&[call])?;
    let expr = exprs
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!("one expression planned"));
    let derivative = expand_markers(expr, ColumnTypes::Unknown, options)?;
    match dialect {
        Dialect::DataFusion => formed_to_sql(&derivative),
        dialect => to_dialect_sql(&derivative, &schema, dialect),
    }
}

/// One call to rewrite: its source range, from its name to its closing
/// parenthesis, and what it calls.
struct CallSpan {
    start: Location,
    end: Location,
    kind: CallKind,
    /// Whether the call's arguments hold a query (`(SELECT …)`).
    reads_a_query: bool,
}

enum CallKind {
    Marker,
    /// `gradient(loss, wrt)`; `aliased` when the query names its result.
    Gradient {
        loss: String,
        wrt: String,
        aliased: bool,
    },
}

/// The outermost calls to rewrite in `tokens`, in order.
fn calls(tokens: &[TokenWithSpan]) -> Result<Vec<CallSpan>> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let token = |i: usize| significant.get(i).map(|t| &t.token);
    let mut calls = vec![];
    let mut i = 0;
    while i < significant.len() {
        let name = called(&significant[i].token);
        let is_call = name.is_some()
            && matches!(token(i + 1), Some(Token::LParen))
            && !matches!(i.checked_sub(1).and_then(token), Some(Token::Period));
        let Some(name) = name.filter(|_| is_call) else {
            i += 1;
            continue;
        };
        let Some(close) = closing_parenthesis(&significant, i + 1) else {
            return plan_err!(
                "unbalanced parentheses in the call of {}",
                significant[i].token
            );
        };
        let kind = match name {
            Called::Marker => CallKind::Marker,
            Called::Gradient => {
                let (loss, wrt) = match (token(i + 2), token(i + 3), token(i + 4), close == i + 5) {
                    (
                        Some(Token::SingleQuotedString(loss)),
                        Some(Token::Comma),
                        Some(Token::SingleQuotedString(wrt)),
                        true,
                    ) => (loss.clone(), wrt.clone()),
                    _ => {
                        return plan_err!(
                            "gradient('<loss query>', '<table>.<column>') takes two string \
                             literals"
                        )
                    }
                };
                let aliased = match token(close + 1) {
                    Some(Token::Word(w)) => {
                        w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword
                    }
                    _ => false,
                };
                CallKind::Gradient { loss, wrt, aliased }
            }
        };
        let reads_a_query = significant[i + 1..close].windows(2).any(|pair| {
            matches!(pair[0].token, Token::LParen)
                && matches!(&pair[1].token, Token::Word(w) if w.keyword == Keyword::SELECT || w.keyword == Keyword::WITH)
        });
        calls.push(CallSpan {
            start: significant[i].span.start,
            end: significant[close].span.end,
            kind,
            reads_a_query,
        });
        i = close + 1;
    }
    Ok(calls)
}

/// The position of the parenthesis that closes the one at `open`.
fn closing_parenthesis(tokens: &[&TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

enum Called {
    Marker,
    Gradient,
}

/// What a function name resolves to, if it is rewritten here: unquoted in any
/// case (the SQL planner lowercases it), or quoted exactly.
fn called(token: &Token) -> Option<Called> {
    let Token::Word(word) = token else {
        return None;
    };
    let name = match word.quote_style {
        None => word.value.to_lowercase(),
        Some(_) => word.value.clone(),
    };
    if Derivative::from_name(&name).is_some() {
        Some(Called::Marker)
    } else if name == GRADIENT {
        Some(Called::Gradient)
    } else {
        None
    }
}

/// Converts the tokenizer's (line, column) locations, counted in characters
/// from 1, to byte offsets in the text.
pub(crate) struct ByteOffsets<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> ByteOffsets<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { sql, line_starts }
    }

    pub(crate) fn of(&self, location: Location) -> usize {
        let line = (location.line as usize).saturating_sub(1);
        let start = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.sql.len());
        let column = (location.column as usize).saturating_sub(1);
        self.sql[start..]
            .char_indices()
            .nth(column)
            .map_or(self.sql.len(), |(i, _)| start + i)
    }
}

/// The byte ranges, within a marker call's text, of its subqueries: each
/// from its opening parenthesis to its closing one.
fn subqueries(call: &str) -> Result<Vec<Range<usize>>> {
    let tokens = Tokenizer::new(&GenericDialect {}, call)
        .tokenize_with_location()
        .map_err(|e| plan_datafusion_err!("cannot read the SQL text: {e}"))?;
    let offsets = ByteOffsets::new(call);
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut ranges = vec![];
    let mut i = 0;
    while i + 1 < significant.len() {
        let opens = matches!(significant[i].token, Token::LParen)
            && matches!(&significant[i + 1].token, Token::Word(w) if w.keyword == Keyword::SELECT || w.keyword == Keyword::WITH);
        if opens {
            let Some(close) = closing_parenthesis(&significant, i) else {
                return plan_err!("unbalanced parentheses in `{call}`");
            };
            ranges.push(
                offsets.of(significant[i].span.start)..offsets.of(significant[close].span.end),
            );
            i = close + 1;
        } else {
            i += 1;
        }
    }
    Ok(ranges)
}

/// `(query)` without its outer parentheses.
fn strip_parentheses(text: &str) -> &str {
    text.trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text)
}

/// A marker call, as planned.
fn as_marker(expr: &Expr) -> Option<(Derivative, &ScalarFunction)> {
    match expr {
        Expr::ScalarFunction(f) => Derivative::from_name(f.func.name()).map(|d| (d, f)),
        _ => None,
    }
}

/// Whether `plan` reads the table called `name`.
fn reads_table(plan: &LogicalPlan, name: &str) -> Result<bool> {
    let table = TableReference::parse_str(name).resolve("datafusion", "public");
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found |= scan.table_name.clone().resolve("datafusion", "public") == table;
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

/// An identifier as SQL text, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether the table factor `text` is `from`'s table named alone, with its
/// alias if it has one: no sample, hint, version or other clause that would
/// read other rows than the table's.
fn names_the_table_alone(text: &str, from: &FromTable) -> bool {
    let Some(name) = &from.name else {
        return false;
    };
    let mut rest = text.trim();
    if let Some(alias) = &from.alias_text {
        let Some(before) = rest.strip_suffix(alias.as_str()) else {
            return false;
        };
        let before = before.trim_end();
        rest = match before.len().checked_sub(2).and_then(|cut| {
            let (head, tail) = (before.get(..cut)?, before.get(cut..)?);
            (tail.eq_ignore_ascii_case("AS") && head.ends_with(char::is_whitespace)).then_some(head)
        }) {
            Some(head) => head.trim_end(),
            None => before,
        };
    }
    rest == name
}
