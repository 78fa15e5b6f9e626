//! Where a relation's columns come from: which output columns are a table's
//! column passed through unchanged, from which scan, and which of those are
//! equal in every row (the keys of inner joins, and filters `a = b`).
//!
//! The reverse rule of a `GROUP BY` reads it to pass a key's cotangent to the
//! table the key comes from at the level of groups, when each group's rows
//! come from one row of that table.

use std::collections::HashMap;

use datafusion_common::{Column, DFSchema};
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, Operator, TableScan};

/// A column of the table a scan reads, by its position in the whole table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    pub scan: &'a TableScan,
    pub column: usize,
}

impl PartialEq for Source<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.scan, other.scan) && self.column == other.column
    }
}

/// The lineage of one relation's columns.
pub(crate) struct Lineage<'a> {
    /// Per output column: the table column it passes through, if it does.
    columns: Vec<Option<Source<'a>>>,
    /// Pairs of table columns equal in every row.
    equal: Vec<(Source<'a>, Source<'a>)>,
}

impl<'a> Lineage<'a> {
    /// The lineage of `plan`'s columns. A scan reached more than once (a
    /// relation read twice through one node) has no lineage: its two
    /// readings' rows differ, and their columns would seem equal.
    pub fn of(plan: &'a LogicalPlan) -> Self {
        let mut visits = HashMap::new();
        let lineage = walk(plan, &mut visits);
        let once = |s: &Source<'a>| visits.get(&(s.scan as *const TableScan)) == Some(&1);
        Self {
            columns: lineage
                .columns
                .into_iter()
                .map(|s| s.filter(once))
                .collect(),
            equal: lineage
                .equal
                .into_iter()
                .filter(|(a, b)| once(a) && once(b))
                .collect(),
        }
    }

    /// The table column output column `j` passes through.
    pub fn source(&self, j: usize) -> Option<Source<'a>> {
        self.columns.get(j).copied().flatten()
    }

    /// Whether `a` and `b` hold the same value in every row.
    pub fn equal(&self, a: Source<'a>, b: Source<'a>) -> bool {
        let mut reached = vec![a];
        let mut k = 0;
        while k < reached.len() {
            let s = reached[k];
            for (x, y) in &self.equal {
                for (from, to) in [(x, y), (y, x)] {
                    if *from == s && !reached.contains(to) {
                        reached.push(*to);
                    }
                }
            }
            k += 1;
        }
        reached.contains(&b)
    }
}

type Visits = HashMap<*const TableScan, usize>;

fn walk<'a>(plan: &'a LogicalPlan, visits: &mut Visits) -> Lineage<'a> {
    let unknown = || Lineage {
        columns: vec![None; plan.schema().fields().len()],
        equal: vec![],
    };
    match plan {
        LogicalPlan::TableScan(scan) => {
            *visits.entry(scan as *const TableScan).or_default() += 1;
            let whole = scan.source.schema().fields().len();
            let columns = match &scan.projection {
                Some(projection) => projection.clone(),
                None => (0..whole).collect(),
            };
            Lineage {
                columns: columns
                    .into_iter()
                    .map(|column| Some(Source { scan, column }))
                    .collect(),
                equal: vec![],
            }
        }
        LogicalPlan::Projection(p) => {
            let input = walk(&p.input, visits);
            let columns = p
                .expr
                .iter()
                .map(|e| match e.clone().unalias() {
                    Expr::Column(c) => index(p.input.schema(), &c).and_then(|j| input.columns[j]),
                    _ => None,
                })
                .collect();
            Lineage {
                columns,
                equal: input.equal,
            }
        }
        LogicalPlan::SubqueryAlias(a) => walk(&a.input, visits),
        LogicalPlan::Sort(s) => walk(&s.input, visits),
        LogicalPlan::Filter(f) => {
            let mut input = walk(&f.input, visits);
            let found = equalities(&f.predicate, f.input.schema(), &input.columns);
            input.equal.extend(found);
            input
        }
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            let left = walk(&j.left, visits);
            let right = walk(&j.right, visits);
            let mut columns = left.columns;
            columns.extend(right.columns);
            let mut equal = left.equal;
            equal.extend(right.equal);
            for (l, r) in &j.on {
                let found = equalities(&l.clone().eq(r.clone()), &j.schema, &columns);
                equal.extend(found);
            }
            if let Some(filter) = &j.filter {
                equal.extend(equalities(filter, &j.schema, &columns));
            }
            Lineage { columns, equal }
        }
        _ => unknown(),
    }
}

/// The pairs of table columns that `predicate`'s conjuncts `a = b` make
/// equal, over a relation with `schema` and lineage `columns`. Only columns
/// of one type compare as they are, and floating-point ones are left out:
/// `-0.0 = 0.0` holds between values that are not the same.
fn equalities<'a>(
    predicate: &Expr,
    schema: &DFSchema,
    columns: &[Option<Source<'a>>],
) -> Vec<(Source<'a>, Source<'a>)> {
    let mut found = vec![];
    for conjunct in split_conjunction(predicate) {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = conjunct
        else {
            continue;
        };
        let (Expr::Column(a), Expr::Column(b)) = (left.as_ref(), right.as_ref()) else {
            continue;
        };
        let (Some(i), Some(j)) = (index(schema, a), index(schema, b)) else {
            continue;
        };
        let (ta, tb) = (schema.field(i).data_type(), schema.field(j).data_type());
        if ta != tb || ta.is_floating() {
            continue;
        }
        if let (Some(x), Some(y)) = (columns[i], columns[j]) {
            found.push((x, y));
        }
    }
    found
}

fn index(schema: &DFSchema, column: &Column) -> Option<usize> {
    schema.index_of_column(column).ok()
}
