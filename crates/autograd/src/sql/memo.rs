//! Statements rewritten before, kept to be rewritten again without forming
//! their gradients anew.
//!
//! A training loop sends the same statement at every step. What the bridge
//! makes of it depends on the text, the options and the relations it looked
//! up, nothing else; so the memo keeps, per statement, the answers of the
//! host's catalog, the rewritten text with a hole where each gradient's table
//! goes, and the passes those tables are placed from. The statement again,
//! with the same answers, places the same passes anew (a host reads its
//! tables afresh for each statement) and fills the holes with their names.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion_common::{Result, TableReference};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::bridge::{rewrite_sql_with, ByteOffsets, Placement};
use crate::catalog::{Catalog, Relation};
use crate::options::AutogradOptions;
use crate::relational::Staged;

/// How many statements a memo keeps; the one used longest ago goes first.
const KEPT: usize = 64;

/// The statements a host had rewritten, and how often they were formed
/// and rewritten again from what was kept.
#[derive(Debug, Default)]
pub struct StatementMemo {
    kept: Mutex<VecDeque<Arc<Kept>>>,
    formed: AtomicUsize,
    reused: AtomicUsize,
}

impl StatementMemo {
    /// How many statements were formed from their text.
    pub fn formed(&self) -> usize {
        self.formed.load(Ordering::Relaxed)
    }

    /// How many were rewritten from what was kept.
    pub fn reused(&self) -> usize {
        self.reused.load(Ordering::Relaxed)
    }

    /// The statement kept for `sql` under `options`, if every relation it
    /// looked up is as it was; one that is not is dropped.
    fn find(
        &self,
        sql: &str,
        options: &AutogradOptions,
        tables: Catalog,
    ) -> Result<Option<Arc<Kept>>> {
        let found = {
            let kept = self.kept.lock().expect("never poisoned");
            kept.iter()
                .find(|k| k.sql == sql && same(&k.options, options))
                .cloned()
        };
        let Some(found) = found else { return Ok(None) };
        for (name, relation) in &found.relations {
            if tables(name)? != *relation {
                self.kept
                    .lock()
                    .expect("never poisoned")
                    .retain(|k| !Arc::ptr_eq(k, &found));
                return Ok(None);
            }
        }
        let mut kept = self.kept.lock().expect("never poisoned");
        kept.retain(|k| !Arc::ptr_eq(k, &found));
        kept.push_back(Arc::clone(&found));
        Ok(Some(found))
    }

    fn keep(&self, statement: Kept) {
        let mut kept = self.kept.lock().expect("never poisoned");
        kept.retain(|k| !(k.sql == statement.sql && same(&k.options, &statement.options)));
        kept.push_back(Arc::new(statement));
        while kept.len() > KEPT {
            kept.pop_front();
        }
    }
}

fn same(a: &AutogradOptions, b: &AutogradOptions) -> bool {
    a.max_derivative_nodes == b.max_derivative_nodes
        && a.max_expression_depth == b.max_expression_depth
}

/// One statement as kept.
#[derive(Debug)]
struct Kept {
    sql: String,
    options: AutogradOptions,
    /// Every relation forming looked up, and what the catalog said.
    relations: Vec<(TableReference, Option<Relation>)>,
    /// The rewritten text, its holes numbered by placement.
    pieces: Vec<Piece>,
    /// Each gradient's table placed, in order: its pass and result.
    placed: Vec<(Arc<Staged>, usize)>,
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Table(usize),
}

/// [`rewrite_sql_with`], remembering in `memo` each statement it rewrites: a
/// statement rewritten before, whose relations are as they were, is not
/// formed again; its passes are placed by `place` as they were the first
/// time. A statement without derivatives is left as it is, and not kept.
pub fn rewrite_sql_kept(
    sql: &str,
    tables: Catalog,
    options: &AutogradOptions,
    place: &mut dyn Placement,
    memo: &StatementMemo,
) -> Result<String> {
    if let Some(kept) = memo.find(sql, options, tables)? {
        let names = kept
            .placed
            .iter()
            .map(|(staged, k)| place.table(staged, *k))
            .collect::<Result<Vec<_>>>()?;
        memo.reused.fetch_add(1, Ordering::Relaxed);
        return Ok(kept
            .pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Table(n) => names[*n].as_str(),
            })
            .collect());
    }
    let relations = RefCell::new(vec![]);
    let recording = |name: &TableReference| {
        let relation = tables(name)?;
        let mut seen = relations.borrow_mut();
        if !seen.iter().any(|(n, _)| n == name) {
            seen.push((name.clone(), relation.clone()));
        }
        Ok(relation)
    };
    let mut placing = Recording {
        place,
        placed: vec![],
    };
    let text = rewrite_sql_with(sql, &recording, options, &mut placing)?;
    if text == sql {
        return Ok(text); // nothing to differentiate
    }
    memo.formed.fetch_add(1, Ordering::Relaxed);
    let names: Vec<&str> = placing.placed.iter().map(|(_, _, n)| n.as_str()).collect();
    if let Some(pieces) = holes(sql, &text, &names) {
        memo.keep(Kept {
            sql: sql.to_string(),
            options: options.clone(),
            relations: relations.into_inner(),
            pieces,
            placed: placing.placed.into_iter().map(|(s, k, _)| (s, k)).collect(),
        });
    }
    Ok(text)
}

/// A placement that remembers what it placed and the names it gave.
struct Recording<'a> {
    place: &'a mut dyn Placement,
    placed: Vec<(Arc<Staged>, usize, String)>,
}

impl Placement for Recording<'_> {
    fn table(&mut self, staged: &Arc<Staged>, k: usize) -> Result<String> {
        let name = self.place.table(staged, k)?;
        self.placed.push((Arc::clone(staged), k, name.clone()));
        Ok(name)
    }

    fn serves_the_loss(&self) -> bool {
        self.place.serves_the_loss()
    }
}

/// `text` cut where it names the tables `names` (identifiers, not words
/// inside literals or comments); None when a name is not an identifier
/// found there, or the statement itself holds it (it would be a hole too).
fn holes(sql: &str, text: &str, names: &[&str]) -> Option<Vec<Piece>> {
    if names.iter().any(|n| sql.contains(n)) {
        return None;
    }
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .ok()?;
    let offsets = ByteOffsets::new(text);
    let mut pieces = vec![];
    let mut copied = 0;
    let mut found = vec![false; names.len()];
    for token in &tokens {
        let Token::Word(word) = &token.token else {
            continue;
        };
        let Some(n) = names.iter().position(|n| *n == word.value) else {
            continue;
        };
        let (start, end) = (offsets.of(token.span.start), offsets.of(token.span.end));
        if text.get(start..end) != Some(names[n]) {
            return None;
        }
        pieces.push(Piece::Text(text[copied..start].to_string()));
        pieces.push(Piece::Table(n));
        found[n] = true;
        copied = end;
    }
    pieces.push(Piece::Text(text[copied..].to_string()));
    found.iter().all(|f| *f).then_some(pieces)
}
