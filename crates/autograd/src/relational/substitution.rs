//! Expressions over a node's input, moved onto the input's augmented plan.

use std::collections::HashMap;

use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{Column, DFSchema, Result};
use datafusion_expr::Expr;

/// Rewrites expressions over a node's input, whose schema is `schema`, into
/// expressions over the input's augmented plan, whose columns for it are
/// `out`.
pub(crate) struct Substitution {
    columns: HashMap<Column, Column>,
}

impl Substitution {
    pub fn new(schema: &DFSchema, out: &[Column]) -> Self {
        let columns = schema
            .columns()
            .into_iter()
            .zip(out.iter().cloned())
            .collect();
        Self { columns }
    }

    /// `expr` over the augmented plan. Columns are matched as the schema
    /// names them, qualified or not.
    pub fn apply(&self, expr: &Expr) -> Result<Expr> {
        expr.clone()
            .transform_up(|e| match &e {
                Expr::Column(c) => match self.find(c) {
                    Some(to) => Ok(Transformed::yes(Expr::Column(to.clone()))),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })
            .map(|t| t.data)
    }

    fn find(&self, column: &Column) -> Option<&Column> {
        self.columns.get(column).or_else(|| {
            let mut by_name = self
                .columns
                .iter()
                .filter(|(from, _)| column.relation.is_none() && from.name == column.name);
            match (by_name.next(), by_name.next()) {
                (Some((_, to)), None) => Some(to),
                _ => None,
            }
        })
    }
}

/// Whether `expr` reads any column `schema` marks active.
pub(crate) fn reads_active(expr: &Expr, schema: &DFSchema, active: &[bool]) -> bool {
    expr.exists(|e| {
        Ok(matches!(e, Expr::Column(c) if schema.index_of_column(c).is_ok_and(|j| active[j])))
    })
    .unwrap_or_else(|_| unreachable!("the visitor never fails"))
}
