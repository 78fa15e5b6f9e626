//! Differentiation before planning, for hosts that never call `simplify`.
//!
//! [`rewrite_sql`] replaces every `grad`/`jvp`/`vjp` call in a SQL text by
//! its derivative, and every `gradient(…)` table function call by the query
//! that computes it, both formed by the same engine, and leaves every other
//! character of the text as it was. The host then plans plain SQL.

use datafusion_common::{plan_datafusion_err, plan_err, Result};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::catalog::Catalog;
use super::{plan_scalar, to_sql};
use crate::forward::marker::{expand_markers, Derivative};
use crate::options::AutogradOptions;
use crate::forward::reals::ColumnTypes;
use super::gradient::{plan_gradients, staged_to_sql};
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
    rewrite_sql_with(sql, tables, options, &mut |staged| {
        Ok(format!("({})", staged_to_sql(staged, 0)?))
    })
}

/// [`rewrite_sql`], with every `gradient(…)` call replaced by the table
/// factor `place` gives for its gradient (a query in parentheses, or the name
/// of a table the host registers).
pub fn rewrite_sql_with(
    sql: &str,
    tables: Catalog,
    options: &AutogradOptions,
    place: &mut dyn FnMut(&Staged) -> Result<String>,
) -> Result<String> {
    with_room(|| {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| plan_datafusion_err!("cannot read the SQL text: {e}"))?;
        let offsets = ByteOffsets::new(sql);
        let mut out = String::with_capacity(sql.len());
        let mut copied = 0;
        for call in calls(&tokens)? {
            let start = offsets.of(call.start);
            let end = offsets.of(call.end);
            out.push_str(&sql[copied..start]);
            match &call.kind {
                CallKind::Marker => {
                    out.push('(');
                    out.push_str(&expand_sql(&sql[start..end], options)?);
                    out.push(')');
                }
                CallKind::Gradient { loss, wrt, aliased } => {
                    out.push_str(&place(&plan_gradients(loss, &[wrt.as_str()], tables, options)?)?);
                    if !aliased {
                        out.push_str(" AS ");
                        out.push_str(GRADIENT);
                    }
                }
            }
            copied = end;
        }
        out.push_str(&sql[copied..]);
        Ok(out)
    })
}

/// The derivative of one SQL marker call, as SQL, for a host that will plan it
/// against a schema unknown here.
fn expand_sql(call: &str, options: &AutogradOptions) -> Result<String> {
    let (exprs, _) = plan_scalar(&[call])?;
    let expr = exprs
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!("one expression planned"));
    to_sql(&expand_markers(expr, ColumnTypes::Unknown, options)?)
}

/// One call to rewrite: its source range, from its name to its closing
/// parenthesis, and what it calls.
struct CallSpan {
    start: Location,
    end: Location,
    kind: CallKind,
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
        calls.push(CallSpan {
            start: significant[i].span.start,
            end: significant[close].span.end,
            kind,
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
struct ByteOffsets<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> ByteOffsets<'a> {
    fn new(sql: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { sql, line_starts }
    }

    fn of(&self, location: Location) -> usize {
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
