//! Contributions to a parameter's rows, summed before the join that brought
//! those rows in (eager aggregation).
//!
//! A parameter's table is usually small and joined with a large one by a
//! key — `x JOIN w ON x.i = w.i`, sixteen rows of `w` against millions of
//! `x`. Contributions reach `w`'s rows as rows of that join, which the
//! reverse pass computes again, only to sum them per row of `w`. When a
//! contribution depends on no column of `w` (∂(x.v·w.w)/∂w.w = x.v), and
//! nothing between the join and the contribution reads `w` but the join's
//! keys, the sum per row of `w` is the sum per key of the other side's
//! contributions, joined with `w` on that key:
//!
//! Σ over (o, s) of `O ⋈ S` with s = σ of c(o)  =  Σ over o with key(o) = key(σ) of c(o)
//!
//! so the contributions are summed per key first, over the other side's rows
//! alone, and the large join is never computed for the reverse pass.
//!
//! Joins above it that pair the table's rows with another relation's alone
//! (a network's bias: `JOIN b1 ON w1.j = b1.j`) join the table's side
//! instead, and an equality above it between the table's side and the rest
//! (the join of a layer's groups back onto its input: `g.j = w1.j`) is one
//! more key to sum by: the first layer of a network sums `x`'s contributions
//! per `(x.i, g.j, g.b)` and joins them with `w1 ⋈ b1`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use datafusion::functions_aggregate::expr_fn::sum;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, NullEquality, Result, ScalarValue};
use datafusion_expr::expr::BinaryExpr;
use datafusion_expr::logical_plan::{Filter, Join};
use datafusion_expr::utils::{conjunction, split_conjunction};
use datafusion_expr::{
    binary_expr as binary, lit, when, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
};

use super::augment::{contribution_column, extend, join, selected, CONTRIBUTION};
use super::backprop::Backprop;

/// The contributions `cot` of the rows of `rows` to the parameter's table,
/// whose columns in `rows` are `columns`: a row per contribution, the
/// table's columns as `contribution_column(k)` and the contribution as
/// [`CONTRIBUTION`]. Summed per key before the join that brought the
/// table's rows in where that gives the same sums (see the module's
/// documentation).
pub(crate) fn contributions(
    bp: &dyn Backprop,
    rows: LogicalPlan,
    columns: &[Column],
    cot: Column,
) -> Result<LogicalPlan> {
    match summed_before_join(bp, &rows, columns, &cot)? {
        Some(summed) => Ok(summed),
        None => project(rows, columns, Expr::Column(cot)),
    }
}

/// The table's columns and the contribution, under the names contributions carry.
fn project(plan: LogicalPlan, columns: &[Column], contribution: Expr) -> Result<LogicalPlan> {
    let mut exprs: Vec<Expr> = columns
        .iter()
        .enumerate()
        .map(|(k, c)| Expr::Column(c.clone()).alias(contribution_column(k)))
        .collect();
    exprs.push(contribution.alias(CONTRIBUTION));
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

fn summed_before_join(
    bp: &dyn Backprop,
    rows: &LogicalPlan,
    columns: &[Column],
    cot: &Column,
) -> Result<Option<LogicalPlan>> {
    let table: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let Some((path, side)) = path_to_join(rows, &table) else {
        return Ok(None);
    };
    let Some(LogicalPlan::Join(found)) = path.last().copied() else {
        return Ok(None);
    };
    if found.join_type != JoinType::Inner {
        return Ok(None);
    }
    // A volatile expression computed once per row of the other side would
    // not be what it was once per pair of rows.
    if rows.exists(|node| Ok(node.expressions().iter().any(Expr::is_volatile)))? {
        return Ok(None);
    }
    let (side_plan, other) = if side == 0 {
        (found.left.as_ref(), found.right.as_ref())
    } else {
        (found.right.as_ref(), found.left.as_ref())
    };
    let Some(mut keys) = Keys::of(found, side, &names(other), &names(side_plan))? else {
        return Ok(None);
    };
    let Some(above) = Above::of(&path, found, side_plan, &mut keys)? else {
        return Ok(None);
    };
    let other = match conjunction(keys.other_only.clone()) {
        Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, other.clone().into())?),
        None => other.clone(),
    };
    let mut needed: HashSet<String> = HashSet::from([cot.name.clone()]);
    for o in &keys.grouped {
        needed.extend(o.column_refs().into_iter().map(|c| c.name.clone()));
    }
    let removal = Removal {
        found,
        other: &other,
        side: above.names,
        joins: above.joins,
        cot: &cot.name,
        deferred: RefCell::default(),
    };
    let Some(without) = removal.without(rows, needed)? else {
        return Ok(None);
    };
    let groups: Vec<Column> = keys.grouped.iter().map(|_| bp.fresh("key")).collect();
    let total = bp.fresh("total");
    let summed = LogicalPlanBuilder::from(without)
        .aggregate(
            keys.grouped
                .iter()
                .zip(&groups)
                .map(|(o, g)| o.clone().alias(g.name.clone())),
            [sum(Expr::Column(cot.clone())).alias(total.name.clone())],
        )?
        .build()?;
    // The side's columns by their names alone: a side that took joins in is
    // read through a projection of its columns, whatever relation named them.
    let on = keys
        .on
        .into_iter()
        .map(|(k, s)| Ok((Expr::Column(groups[k].clone()), unqualified(s)?)))
        .collect::<Result<_>>()?;
    let filter = keys
        .conditions
        .into_iter()
        .map(|condition| unqualified(condition.over(&groups)))
        .collect::<Result<Vec<_>>>()?;
    let joined = join(
        selected(summed)?,
        standing_alone(above.plan)?,
        on,
        conjunction(filter),
        JoinType::Inner,
        found.null_equality,
    )?;
    let total = match conjunction(removal.deferred.take()) {
        Some(condition) => {
            let condition = unqualified(condition)?;
            when(condition, Expr::Column(total)).otherwise(lit(ScalarValue::Float64(None)))?
        }
        None => Expr::Column(total),
    };
    project(joined, columns, total).map(Some)
}

/// What becomes of the joins above the join that brought the table's rows
/// in, found from it upwards.
struct Above {
    /// The table's side: its rows joined with those of every join above
    /// that pairs them with rows of its other input alone (the first layer
    /// of a network: `w1`, and `b1` joined on `w1.j = b1.j`).
    plan: LogicalPlan,
    /// The names of its columns.
    names: HashSet<String>,
    /// What becomes of each join above.
    joins: HashMap<*const Join, Fate>,
}

/// What becomes of a join above the one that brought the table's rows in.
enum Fate {
    /// Taken into the table's side.
    Joins,
    /// Kept, with the parts of its condition that do not read the table's side.
    Kept(Option<Expr>),
}

impl Above {
    /// The joins of `path` above `found`, whose table's side is
    /// `side_plan`; each part of a kept join's condition that compares the
    /// table's side with the rest is added to `keys` (the join of a
    /// reduction's groups back onto its input: `g.j = w1.j`). None where a
    /// kept join reads the table's side otherwise.
    fn of(
        path: &[&LogicalPlan],
        found: &Join,
        side_plan: &LogicalPlan,
        keys: &mut Keys,
    ) -> Result<Option<Self>> {
        let mut above = Above {
            plan: side_plan.clone(),
            names: names(side_plan),
            joins: HashMap::new(),
        };
        for node in path.iter().rev().skip(1) {
            let LogicalPlan::Join(j) = node else {
                continue;
            };
            if j.join_type != JoinType::Inner {
                return Ok(None);
            }
            let beside = if contains(&j.left, found) {
                j.right.as_ref()
            } else {
                j.left.as_ref()
            };
            let beside_names = names(beside);
            let parts = condition_parts(j);
            let reads = |e: &Expr, set: &HashSet<String>| {
                e.column_refs().iter().any(|c| set.contains(&c.name))
            };
            let pairs_side_alone = parts.iter().any(|p| reads(p, &above.names))
                && parts.iter().all(|p| {
                    p.column_refs()
                        .iter()
                        .all(|c| above.names.contains(&c.name) || beside_names.contains(&c.name))
                });
            if pairs_side_alone {
                above.plan = join(
                    above.plan,
                    beside.clone(),
                    vec![],
                    conjunction(parts),
                    JoinType::Inner,
                    j.null_equality,
                )?;
                above.names.extend(beside_names);
                above.joins.insert(j as *const Join, Fate::Joins);
                continue;
            }
            let mut kept = vec![];
            for part in parts {
                if !reads(&part, &above.names) {
                    kept.push(part);
                    continue;
                }
                let rest = |e: &Expr| !reads(e, &above.names);
                let side = |e: &Expr| {
                    e.column_refs()
                        .iter()
                        .all(|c| above.names.contains(&c.name))
                };
                if !keys.compared(&part, rest, side)? {
                    return Ok(None);
                }
            }
            above
                .joins
                .insert(j as *const Join, Fate::Kept(conjunction(kept)));
        }
        Ok(Some(above))
    }
}

/// The parts of an inner join's condition: its keys as equalities (`IS NOT
/// DISTINCT FROM` where NULLs meet), and its filter's conjuncts.
fn condition_parts(j: &Join) -> Vec<Expr> {
    let op = match j.null_equality {
        NullEquality::NullEqualsNull => Operator::IsNotDistinctFrom,
        NullEquality::NullEqualsNothing => Operator::Eq,
    };
    j.on.iter()
        .map(|(l, r)| binary(l.clone(), op, r.clone()))
        .chain(j.filter.iter().flat_map(split_conjunction).cloned())
        .collect()
}

/// How an inner join pairs the rows of the other side with the rows of the
/// table's side, split for summing the other side's rows first.
struct Keys {
    /// The other side's expressions the pairing reads, summed by.
    grouped: Vec<Expr>,
    /// Equi-join keys: the index of a grouped expression, and the table's
    /// side's key it equals (with the join's NULL equality).
    on: Vec<(usize, Expr)>,
    /// The rest of the join's condition over both sides, or over the table's side alone.
    conditions: Vec<Condition>,
    /// The parts of the join's condition that read the other side alone.
    other_only: Vec<Expr>,
}

/// A part of a join's condition, with the other side's expressions as grouped.
enum Condition {
    /// `grouped[k] op side`, `op` an equality.
    Compares(usize, Operator, Expr),
    /// Reads the table's side alone.
    Side(Expr),
}

impl Condition {
    fn over(self, groups: &[Column]) -> Expr {
        match self {
            Condition::Compares(k, op, side) => Expr::BinaryExpr(BinaryExpr::new(
                Box::new(Expr::Column(groups[k].clone())),
                op,
                Box::new(side),
            )),
            Condition::Side(e) => e,
        }
    }
}

impl Keys {
    /// The keys of `join`, whose input `side` is the table's; None where a
    /// part of its condition reads both sides other than as an equality.
    fn of(
        join: &Join,
        side: usize,
        other_names: &HashSet<String>,
        side_names: &HashSet<String>,
    ) -> Result<Option<Self>> {
        let within = |e: &Expr, names: &HashSet<String>| {
            e.column_refs().iter().all(|c| names.contains(&c.name))
        };
        let mut keys = Keys {
            grouped: vec![],
            on: vec![],
            conditions: vec![],
            other_only: vec![],
        };
        for (l, r) in &join.on {
            let (o, s) = if side == 0 { (r, l) } else { (l, r) };
            keys.on.push((keys.grouped.len(), s.clone()));
            keys.grouped.push(unqualified(o.clone())?);
        }
        for part in join.filter.iter().flat_map(split_conjunction) {
            if within(part, other_names) {
                keys.other_only.push(part.clone());
                continue;
            }
            if within(part, side_names) {
                keys.conditions.push(Condition::Side(part.clone()));
                continue;
            }
            if !keys.compared(part, |e| within(e, other_names), |e| within(e, side_names))? {
                return Ok(None);
            }
        }
        Ok((!keys.grouped.is_empty()).then_some(keys))
    }

    /// Takes `part`, an equality between an expression that `rest` accepts
    /// and one of the table's side (`side`), as one more key to sum by;
    /// false where it is not one.
    fn compared(
        &mut self,
        part: &Expr,
        rest: impl Fn(&Expr) -> bool,
        side: impl Fn(&Expr) -> bool,
    ) -> Result<bool> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = part else {
            return Ok(false);
        };
        if !matches!(op, Operator::Eq | Operator::IsNotDistinctFrom) {
            return Ok(false);
        }
        let (r, s) = if rest(left) && side(right) {
            (left, right)
        } else if rest(right) && side(left) {
            (right, left)
        } else {
            return Ok(false);
        };
        self.conditions.push(Condition::Compares(
            self.grouped.len(),
            *op,
            s.as_ref().clone(),
        ));
        self.grouped.push(unqualified(r.as_ref().clone())?);
        Ok(true)
    }
}

/// The nodes from `plan` down to the deepest join under it, through
/// projections, filters and joins, one of whose sides holds every column in
/// `table` (the join last), with that side's index.
fn path_to_join<'a>(
    plan: &'a LogicalPlan,
    table: &HashSet<&str>,
) -> Option<(Vec<&'a LogicalPlan>, usize)> {
    let holds = |p: &LogicalPlan| {
        let found = names(p);
        table.iter().all(|c| found.contains(*c))
    };
    let mut path = vec![];
    let mut deepest = None;
    let mut node = plan;
    loop {
        path.push(node);
        node = match node {
            LogicalPlan::Projection(p) if holds(&p.input) => &p.input,
            LogicalPlan::Filter(f) if holds(&f.input) => &f.input,
            LogicalPlan::Join(j) => {
                let side = if holds(&j.left) {
                    0
                } else if holds(&j.right) {
                    1
                } else {
                    break;
                };
                deepest = Some((path.len(), side));
                if side == 0 {
                    &j.left
                } else {
                    &j.right
                }
            }
            _ => break,
        };
    }
    let (length, side) = deepest?;
    path.truncate(length);
    Some((path, side))
}

/// Taking the table's side away from the join `found` under a plan.
struct Removal<'a> {
    found: &'a Join,
    /// What stands in the join's place: its other side.
    other: &'a LogicalPlan,
    /// The names of the columns of the side taken away.
    side: HashSet<String>,
    /// The joins above `found` (see [`Above`]).
    joins: HashMap<*const Join, Fate>,
    /// The contributions' column.
    cot: &'a str,
    /// Conditions on the side's columns alone that the contributions' column
    /// was NULL without, taken out of it (see [`hoisted`]): they hold or not
    /// for all the rows paired with one row of the side, and are applied once
    /// the sums are joined with it.
    deferred: RefCell<Vec<Expr>>,
}

impl Removal<'_> {
    fn reads_side(&self, e: &Expr) -> bool {
        e.column_refs().iter().any(|c| self.side.contains(&c.name))
    }

    /// `plan` with the join replaced by its other side, keeping the columns
    /// `needed` of `plan`'s output; None unless every node between is a
    /// projection, a filter or an inner join, and nothing that `needed`
    /// depends on reads a column of the side taken away, so that every node
    /// above computes from the other side's rows what it computed before.
    fn without(&self, plan: &LogicalPlan, needed: HashSet<String>) -> Result<Option<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(j) if std::ptr::eq(j, self.found) => {
                Ok((!needed.iter().any(|n| self.side.contains(n))).then(|| self.other.clone()))
            }
            LogicalPlan::Projection(p) => {
                let mut kept = vec![];
                for (e, f) in p.expr.iter().zip(p.schema.fields()) {
                    if !needed.contains(f.name()) {
                        continue;
                    }
                    if !self.reads_side(e) {
                        kept.push(e.clone());
                        continue;
                    }
                    if f.name() != self.cot {
                        return Ok(None);
                    }
                    let (inner, name) = match e {
                        Expr::Alias(alias) => (alias.expr.as_ref(), alias.name.clone()),
                        _ => return Ok(None),
                    };
                    let Some((inner, conditions)) = hoisted(inner, &self.side)? else {
                        return Ok(None);
                    };
                    if self.reads_side(&inner) {
                        return Ok(None);
                    }
                    self.deferred.borrow_mut().extend(conditions);
                    kept.push(inner.alias(name));
                }
                // A column this projection leaves out, read further up (a
                // reduction's group key compared with the table's side),
                // passed up from its input.
                let input_names = names(&p.input);
                for name in &needed {
                    if p.schema.field_with_unqualified_name(name).is_err() {
                        if !input_names.contains(name) || self.side.contains(name) {
                            return Ok(None);
                        }
                        kept.push(Expr::Column(Column::from_name(name.clone())));
                    }
                }
                if kept.len() < needed.len() {
                    return Ok(None);
                }
                let below = kept
                    .iter()
                    .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
                    .collect();
                let Some(input) = self.without(&p.input, below)? else {
                    return Ok(None);
                };
                LogicalPlanBuilder::from(input)
                    .project(kept)?
                    .build()
                    .map(Some)
            }
            LogicalPlan::Filter(f) => {
                if self.reads_side(&f.predicate) {
                    return Ok(None);
                }
                let mut below = needed;
                below.extend(
                    f.predicate
                        .column_refs()
                        .into_iter()
                        .map(|c| c.name.clone()),
                );
                let Some(input) = self.without(&f.input, below)? else {
                    return Ok(None);
                };
                Ok(Some(LogicalPlan::Filter(Filter::try_new(
                    f.predicate.clone(),
                    input.into(),
                )?)))
            }
            LogicalPlan::Join(j) => {
                let kept = match self.joins.get(&(j as *const Join)) {
                    Some(Fate::Kept(kept)) => Some(kept),
                    Some(Fate::Joins) => None,
                    None => return Ok(None),
                };
                if needed.iter().any(|n| self.side.contains(n)) {
                    return Ok(None);
                }
                let (through, beside, path) = if contains(&j.left, self.found) {
                    (j.left.as_ref(), j.right.as_ref(), 0)
                } else {
                    (j.right.as_ref(), j.left.as_ref(), 1)
                };
                let through_names = names(through);
                let beside_names = names(beside);
                if needed
                    .iter()
                    .any(|n| !through_names.contains(n) && !beside_names.contains(n))
                {
                    return Ok(None);
                }
                let mut below: HashSet<String> = needed
                    .into_iter()
                    .filter(|n| through_names.contains(n))
                    .collect();
                below.extend(
                    kept.iter()
                        .copied()
                        .flatten()
                        .flat_map(|e| e.column_refs())
                        .map(|c| c.name.clone())
                        .filter(|n| through_names.contains(n)),
                );
                let Some(through) = self.without(through, below)? else {
                    return Ok(None);
                };
                let Some(kept) = kept else {
                    // Taken into the table's side.
                    return Ok(Some(through));
                };
                let (left, right) = if path == 0 {
                    (through, beside.clone())
                } else {
                    (beside.clone(), through)
                };
                join(
                    standing_alone(left)?,
                    standing_alone(right)?,
                    vec![],
                    kept.clone(),
                    JoinType::Inner,
                    j.null_equality,
                )
                .map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// `expr` without the conditions on the columns `side` alone under which a
/// part of it is NULL, and those conditions: `expr` is NULL wherever one of
/// them fails and equals what is left wherever all hold. A reduction's
/// contribution is NULL for the rows it does not count — `CASE WHEN x.v *
/// w.w IS NOT NULL THEN … END`, where `x.v * w.w` is NULL exactly when one of
/// its operands is — and arithmetic is NULL where an operand is. None where
/// `expr` has another shape around a column of `side`.
fn hoisted(expr: &Expr, side: &HashSet<String>) -> Result<Option<(Expr, Vec<Expr>)>> {
    let reads_side = |e: &Expr| e.column_refs().iter().any(|c| side.contains(&c.name));
    if !reads_side(expr) {
        return Ok(Some((expr.clone(), vec![])));
    }
    Ok(match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if arithmetic(*op) => {
            let (Some((l, mut lc)), Some((r, rc))) = (hoisted(left, side)?, hoisted(right, side)?)
            else {
                return Ok(None);
            };
            lc.extend(rc);
            Some((binary(l, *op, r), lc))
        }
        Expr::Negative(inner) => {
            hoisted(inner, side)?.map(|(e, c)| (Expr::Negative(Box::new(e)), c))
        }
        Expr::Case(case)
            if case.expr.is_none()
                && case.when_then_expr.len() == 1
                && case.else_expr.as_deref().is_none_or(is_null) =>
        {
            let (condition, then) = &case.when_then_expr[0];
            let Some((then, mut conditions)) = hoisted(then, side)? else {
                return Ok(None);
            };
            let mut kept = vec![];
            for part in split_conjunction(condition)
                .into_iter()
                .flat_map(not_null_parts)
            {
                if part.column_refs().iter().all(|c| side.contains(&c.name)) {
                    conditions.push(part);
                } else if reads_side(&part) {
                    return Ok(None);
                } else {
                    kept.push(part);
                }
            }
            let expr = match conjunction(kept) {
                Some(condition) => {
                    when(condition, then).otherwise(lit(ScalarValue::Float64(None)))?
                }
                None => then,
            };
            Some((expr, conditions))
        }
        _ => None,
    })
}

/// `condition` as a conjunction: `a ⊙ b IS NOT NULL` for arithmetic ⊙ is `a
/// IS NOT NULL AND b IS NOT NULL`.
fn not_null_parts(condition: &Expr) -> Vec<Expr> {
    fn operands(e: &Expr, parts: &mut Vec<Expr>) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if arithmetic(*op) => {
                operands(left, parts);
                operands(right, parts);
            }
            Expr::Negative(inner) => operands(inner, parts),
            Expr::Literal(value, _) if !value.is_null() => {}
            e => parts.push(e.clone().is_not_null()),
        }
    }
    match condition {
        Expr::IsNotNull(inner) => {
            let mut parts = vec![];
            operands(inner, &mut parts);
            parts
        }
        other => vec![other.clone()],
    }
}

/// Whether `op` gives NULL exactly where an operand is NULL.
fn arithmetic(op: Operator) -> bool {
    matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide
    )
}

fn is_null(e: &Expr) -> bool {
    matches!(e, Expr::Literal(value, _) if value.is_null())
}

/// `plan`, selecting its columns by name where it is a join: printed as SQL,
/// a join that is one side of another is read into that join's `FROM`, its
/// conditions against the wrong relations.
fn standing_alone(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Join(_) => extend(plan, vec![]),
        other => Ok(other),
    }
}

/// Whether `found` is a node of `plan`.
fn contains(plan: &LogicalPlan, found: &Join) -> bool {
    let mut seen = false;
    let _ = plan.apply(|node| {
        seen = matches!(node, LogicalPlan::Join(j) if std::ptr::eq(j, found));
        Ok(if seen {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    seen
}

/// The names of `plan`'s output columns.
fn names(plan: &LogicalPlan) -> HashSet<String> {
    plan.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// `expr` with its columns named by their names alone, as the projections of
/// augmented plans pass them up (every column's name is its own).
fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => {
                Transformed::yes(Expr::Column(Column::from_name(c.name)))
            }
            e => Transformed::no(e),
        })
    })
    .map(|t| t.data)
}
