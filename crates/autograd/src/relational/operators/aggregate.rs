//! Aggregate (`GROUP BY`, or one group without it): each output row stands
//! for a group of input rows; see [`crate::relational::reductions`] for how
//! its cotangent reaches them. Which rows form a group is piecewise constant
//! in the keys, like a condition; a key's value, shared by its group's rows,
//! is differentiable like any output. A key that is a parameter's column,
//! grouped so that each group's rows come from one row of the parameter's
//! table (`GROUP BY x.s, w.j, b.b` over `JOIN b ON w.j = b.j`), passes its
//! cotangent to that row directly ([`crate::relational::lineage`] says
//! where columns come from).

use std::rc::Rc;

use datafusion_common::{Column, Result};
use datafusion_expr::logical_plan::Aggregate;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use super::Op;
use crate::relational::augment::{
    contribution_column, selected, Augmented, Bar, Layout, CONTRIBUTION,
};
use crate::relational::backprop::Backprop;
use crate::relational::lineage::{Lineage, Source};
use crate::relational::reductions::{spread, Grouped, Reduced, Reduction, ReductionCall};
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::{reads_active, Substitution};

/// The aggregate function call an output expression makes.
fn call(expr: &Expr) -> Option<ReductionCall<'_>> {
    match expr {
        Expr::AggregateFunction(f) => Some(ReductionCall {
            expr,
            name: f.func.name(),
            args: &f.params.args,
            filter: f.params.filter.as_deref(),
            distinct: f.params.distinct,
        }),
        Expr::Alias(a) => call(&a.expr),
        _ => None,
    }
}

impl Op<'_, Aggregate> {
    fn call<'e>(&self, expr: &'e Expr) -> Result<ReductionCall<'e>> {
        match call(expr) {
            Some(c) => Ok(c),
            None => unsupported(
                self.node,
                format!("`{expr}` is not an aggregate function call"),
            ),
        }
    }
}

/// A group key whose contributions go straight to the row of a parameter's
/// table that its group comes from (see [`Op::key_at_group_level`]).
struct KeyOfRow {
    /// The parameter's position.
    parameter: usize,
    /// For each column of the parameter's table, the group key equal to it.
    keys: Vec<usize>,
    /// The key's contributions, in the aggregate's contributions.
    cot: Column,
}

impl KeyOfRow {
    /// The contributions, from `plan`, in which group key `g` is `column(g)`
    /// and the contributions are `cot`, as rows of the parameter's table.
    fn contributions(
        &self,
        plan: LogicalPlan,
        column: impl Fn(usize) -> Column,
        cot: Column,
    ) -> Result<LogicalPlan> {
        let mut exprs: Vec<Expr> = self
            .keys
            .iter()
            .enumerate()
            .map(|(c, &g)| Expr::Column(column(g)).alias(contribution_column(c)))
            .collect();
        exprs.push(Expr::Column(cot).alias(CONTRIBUTION));
        LogicalPlanBuilder::from(plan).project(exprs)?.build()
    }
}

impl Op<'_, Aggregate> {
    /// Group key `g`, with contributions `cot`, when they can be passed
    /// straight to the parameter's table the key comes from: every group's
    /// rows come from one row of that table, the key is the parameter's
    /// column passed through, and each of the table's columns equals a group
    /// key in every row. Each row of a group would get a share of the
    /// group's contribution, and the shares would all meet again at that one
    /// row of the table; so the group's contribution is that row's, and no
    /// join back onto the group's rows is needed.
    fn key_at_group_level(
        &self,
        bp: &dyn Backprop,
        lineage: &Lineage,
        g: usize,
        cot: &Column,
    ) -> Option<KeyOfRow> {
        let agg = self.op;
        let schema = agg.input.schema();
        let sources: Vec<Option<Source>> = agg
            .group_expr
            .iter()
            .map(|e| match e.clone().unalias() {
                Expr::Column(c) => schema
                    .index_of_column(&c)
                    .ok()
                    .and_then(|j| lineage.source(j)),
                _ => None,
            })
            .collect();
        let source = sources[g]?;
        let table = source.scan.source.schema();
        let parameter = bp.parameters().iter().position(|p| {
            p.is_scanned_by(source.scan) && table.index_of(p.column()).ok() == Some(source.column)
        })?;
        let keys = (0..table.fields().len())
            .map(|column| {
                let here = Source {
                    scan: source.scan,
                    column,
                };
                sources
                    .iter()
                    .position(|s| s.is_some_and(|s| lineage.equal(s, here)))
            })
            .collect::<Option<Vec<usize>>>()?;
        Some(KeyOfRow {
            parameter,
            keys,
            cot: cot.clone(),
        })
    }
}

impl Rule for Op<'_, Aggregate> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        let agg = self.op;
        let schema = agg.input.schema();
        let reads = |e: &Expr| reads_active(e, schema, &inputs[0]);
        let mut out = vec![];
        for g in &agg.group_expr {
            if matches!(g, Expr::GroupingSet(_)) && reads(g) {
                return unsupported(self.node, "grouping sets are not differentiated");
            }
            out.push(reads(g));
        }
        for e in &agg.aggr_expr {
            out.push(reads(e) && self.call(e)?.reduction(self.node)?.is_differentiable());
        }
        if out.iter().any(|a| *a)
            && agg
                .group_expr
                .iter()
                .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return unsupported(self.node, "grouping sets are not differentiated");
        }
        Ok(out)
    }

    /// The aggregate over its input's augmented plan, which the reverse rule
    /// reads again (see [`Backprop::reduced_input`]).
    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let agg = self.op;
        let input = bp.reduced_input(&agg.input)?;
        let substitution = Substitution::new(agg.input.schema(), &input.out);
        let out = bp.out_names(self.node);
        let (group_names, aggr_names) = out.split_at(agg.group_expr.len());
        let named = |exprs: &[Expr], names: &[Column]| {
            exprs
                .iter()
                .zip(names)
                .map(|(e, n)| {
                    Ok(substitution
                        .apply(&e.clone().unalias())?
                        .alias(n.name.clone()))
                })
                .collect::<Result<Vec<_>>>()
        };
        let plan = LogicalPlanBuilder::from(input.plan.clone())
            .aggregate(
                named(&agg.group_expr, group_names)?,
                named(&agg.aggr_expr, aggr_names)?,
            )?
            .build()?;
        Ok(Augmented {
            plan: selected(plan)?,
            out,
            layout: Layout::Groups {
                input: Box::new(input),
            },
        })
    }

    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        let agg = self.op;
        let Layout::Groups { input } = &bar.aug.layout else {
            return datafusion_common::internal_err!("an aggregate's rows are groups");
        };
        let input = input.as_ref().clone();
        let substitution = Substitution::new(agg.input.schema(), &input.out);
        let groups = agg.group_expr.len();
        let lineage = Lineage::of(&agg.input);
        let mut reduced = vec![];
        let mut of_rows = vec![];
        for (g, key) in agg.group_expr.iter().enumerate() {
            if let Some(cot) = bar.cot[g].clone() {
                if let Some(of_row) = self.key_at_group_level(bp, &lineage, g, &cot) {
                    of_rows.push(of_row);
                    continue;
                }
                reduced.push(Reduced {
                    reduction: Reduction::Key,
                    arg: substitution.apply(&key.clone().unalias())?,
                    filter: None,
                    cot,
                });
            }
        }
        for (i, e) in agg.aggr_expr.iter().enumerate() {
            if let Some(cot) = bar.cot[groups + i].clone() {
                reduced.push(self.call(e)?.reduced(self.node, &substitution, cot)?);
            }
        }
        let determining = determining_keys(agg);
        // Keys passed to their rows: from the groups' sums that the
        // reductions take anyway, where those are keyed by the columns the
        // table's rows are matched on, so that the contributions are read
        // once; otherwise from the contributions themselves.
        let (summed, read): (Vec<KeyOfRow>, Vec<KeyOfRow>) = of_rows
            .into_iter()
            .partition(|k| !reduced.is_empty() && k.keys.iter().all(|g| determining.contains(g)));
        for of_row in read {
            let plan = of_row.contributions(
                bar.plan.clone(),
                |g| bar.aug.out[g].clone(),
                of_row.cot.clone(),
            )?;
            bp.contribute(of_row.parameter, plan);
        }
        if reduced.is_empty() {
            return Ok(vec![]);
        }
        let input_keys = determining
            .iter()
            .map(|&g| substitution.apply(&agg.group_expr[g].clone().unalias()))
            .collect::<Result<Vec<_>>>()?;
        let bar_keys = determining
            .iter()
            .map(|&g| Expr::Column(bar.aug.out[g].clone()))
            .collect();
        let active = bp.active(&agg.input)?;
        let passed: Vec<Column> = summed.iter().map(|k| k.cot.clone()).collect();
        let spread = spread(
            bp,
            input,
            &active,
            input_keys,
            Grouped {
                bar: &bar,
                keys: bar_keys,
                passed: &passed,
            },
            reduced,
        )?;
        for (of_row, total) in summed.iter().zip(&spread.passed) {
            let key = |g: usize| {
                let at = determining.iter().position(|&d| d == g);
                spread.keys[at.expect("summed keys are determining")].clone()
            };
            let plan = of_row.contributions(spread.groups.clone(), key, total.clone())?;
            bp.contribute(of_row.parameter, plan);
        }
        Ok(spread.bar.map(|b| vec![(0, b)]).unwrap_or_default())
    }
}

/// The positions of the group keys that determine a group: those the input's
/// functional dependencies do not derive from the others. DataFusion groups
/// by every column a key determines (`GROUP BY k` over rows unique in `k`
/// also groups by their other columns); joining contributions back on those
/// too would compare values a host may compute again, in another order, for
/// each reading.
fn determining_keys(agg: &Aggregate) -> Vec<usize> {
    let schema = agg.input.schema();
    let columns: Vec<Option<usize>> = agg
        .group_expr
        .iter()
        .map(|g| match g {
            Expr::Column(c) => schema.index_of_column(c).ok(),
            _ => None,
        })
        .collect();
    let mut kept = vec![true; columns.len()];
    for j in 0..columns.len() {
        let Some(column) = columns[j] else { continue };
        let others: Vec<usize> = (0..columns.len())
            .filter(|&k| k != j && kept[k])
            .filter_map(|k| columns[k])
            .collect();
        let determined = schema.functional_dependencies().iter().any(|d| {
            !d.source_indices.is_empty()
                && d.source_indices.iter().all(|s| others.contains(s))
                && d.target_indices.contains(&column)
        });
        kept[j] = !determined;
    }
    (0..columns.len()).filter(|&j| kept[j]).collect()
}
