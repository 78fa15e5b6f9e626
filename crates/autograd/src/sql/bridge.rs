//! Differentiation before planning, for hosts that never call `simplify`.
//!
//! [`rewrite_sql`] replaces every `grad`/`jvp`/`vjp` call in a SQL text by
//! its derivative, computed by the same engine, and leaves every other
//! character of the text as it was. The host then plans plain SQL.

use datafusion_common::{plan_datafusion_err, plan_err, Result};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::{plan_scalar, to_sql};
use crate::marker::{expand_markers, Derivative};
use crate::reals::ColumnTypes;

/// `sql` with every marker call replaced by its derivative, in parentheses.
///
/// Markers are found by SQL tokens, so string literals, comments and quoted
/// identifiers that merely contain the word `grad` are left alone, and any
/// statement DataFusion accepts (queries, DML, DDL, `EXPLAIN`) keeps its text.
/// Nested markers are differentiated innermost first. Column types are not
/// known here, so every column inside a derivative is read as DOUBLE.
///
/// ```
/// use datafusion_autograd::rewrite_sql;
///
/// let sql = "SELECT x, grad(x * x, x) AS d FROM t -- grad(y, y)";
/// assert_eq!(
///     rewrite_sql(sql).unwrap(),
///     "SELECT x, (CAST(x AS DOUBLE) + CAST(x AS DOUBLE)) AS d FROM t -- grad(y, y)"
/// );
/// ```
pub fn rewrite_sql(sql: &str) -> Result<String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| plan_datafusion_err!("cannot read the SQL text: {e}"))?;
    let offsets = ByteOffsets::new(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for call in marker_calls(&tokens)? {
        let start = offsets.of(call.start);
        let end = offsets.of(call.end);
        out.push_str(&sql[copied..start]);
        out.push('(');
        out.push_str(&expand_sql(&sql[start..end])?);
        out.push(')');
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

/// The derivative of one SQL marker call, as SQL, for a host that will plan it
/// against a schema unknown here.
fn expand_sql(call: &str) -> Result<String> {
    let (exprs, _) = plan_scalar(&[call])?;
    let expr = exprs
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!("one expression planned"));
    to_sql(&expand_markers(expr, ColumnTypes::Unknown)?)
}

/// Source range of one marker call: from its name to its closing parenthesis.
struct MarkerSpan {
    start: Location,
    end: Location,
}

/// The outermost marker calls in `tokens`, in order.
fn marker_calls(tokens: &[TokenWithSpan]) -> Result<Vec<MarkerSpan>> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut calls = vec![];
    let mut i = 0;
    while i < significant.len() {
        let is_call = is_marker_name(&significant[i].token)
            && matches!(
                significant.get(i + 1).map(|t| &t.token),
                Some(Token::LParen)
            )
            && !matches!(
                i.checked_sub(1).map(|p| &significant[p].token),
                Some(Token::Period)
            );
        if !is_call {
            i += 1;
            continue;
        }
        let mut depth = 0usize;
        let mut close = None;
        for (j, t) in significant.iter().enumerate().skip(i + 1) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            return plan_err!(
                "unbalanced parentheses in the call of {}",
                significant[i].token
            );
        };
        calls.push(MarkerSpan {
            start: significant[i].span.start,
            end: significant[close].span.end,
        });
        i = close + 1;
    }
    Ok(calls)
}

/// A function name that resolves to a marker: unquoted in any case (the SQL
/// planner lowercases it), or quoted exactly.
fn is_marker_name(token: &Token) -> bool {
    let Token::Word(word) = token else {
        return false;
    };
    match word.quote_style {
        None => Derivative::from_name(&word.value.to_lowercase()).is_some(),
        Some(_) => Derivative::from_name(&word.value).is_some(),
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
