//! Table scans: the leaves. Only a scan of the parameter's table has a
//! differentiable column; its contributions are recorded, to be summed per
//! row at the end.

use std::any::Any;
use std::rc::Rc;

use datafusion::datasource::source_as_provider;

use datafusion_common::Result;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableScan};

use crate::relational::augment::{
    contribution_column, rename, Augmented, Bar, Layout, CONTRIBUTION,
};
use crate::relational::backprop::Backprop;
use crate::relational::rule::{unsupported, Rule};
use crate::relational::staged::GradientTable;

pub(super) const RULE: Rule = Rule {
    activity,
    forward,
    backward,
};

fn activity(bp: &dyn Backprop, node: &LogicalPlan, _: &[Rc<[bool]>]) -> Result<Vec<bool>> {
    let LogicalPlan::TableScan(scan) = node else {
        unreachable!("the scan rule is only called on scans")
    };
    if reads_a_gradient(scan) {
        return unsupported(
            node,
            "it reads the result of gradient(), whose dependence on the parameter is not \
             followed: derivatives of gradients are taken with markers inside one query",
        );
    }
    let mut active = vec![false; node.schema().fields().len()];
    if bp.parameter().is_scanned_by(scan) {
        if let Some(j) = bp.parameter().column_of(scan) {
            if scan.fetch.is_some() {
                return unsupported(
                    node,
                    "a LIMIT on the parameter's table picks rows by position",
                );
            }
            active[j] = true;
        }
    }
    Ok(active)
}

/// Whether `scan` reads a table that `gradient()` returned.
fn reads_a_gradient(scan: &TableScan) -> bool {
    source_as_provider(&scan.source)
        .is_ok_and(|provider| (provider.as_ref() as &dyn Any).is::<GradientTable>())
}

fn forward(bp: &dyn Backprop, node: &LogicalPlan) -> Result<Augmented> {
    let LogicalPlan::TableScan(scan) = node else {
        unreachable!("the scan rule is only called on scans")
    };
    // All of the table's columns: together they are what tells a row apart.
    let full = LogicalPlanBuilder::scan_with_filters(
        scan.table_name.clone(),
        scan.source.clone(),
        None,
        scan.filters.clone(),
    )?
    .build()?;
    let columns: Vec<_> = (0..full.schema().fields().len())
        .map(|k| bp.out_name(node, k))
        .collect();
    let out = match &scan.projection {
        Some(projection) => projection.iter().map(|&k| columns[k].clone()).collect(),
        None => columns.clone(),
    };
    Ok(Augmented {
        plan: rename(full, &columns)?,
        out,
        layout: Layout::Parameter { columns },
    })
}

fn backward(bp: &dyn Backprop, node: &LogicalPlan, bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let LogicalPlan::TableScan(scan) = node else {
        unreachable!("the scan rule is only called on scans")
    };
    let Layout::Parameter { columns } = &bar.aug.layout else {
        unreachable!("an active scan is the parameter's")
    };
    let Some(cot) = bp
        .parameter()
        .column_of(scan)
        .and_then(|j| bar.cot[j].clone())
    else {
        return Ok(vec![]);
    };
    let mut exprs: Vec<Expr> = columns
        .iter()
        .enumerate()
        .map(|(k, c)| Expr::Column(c.clone()).alias(contribution_column(k)))
        .collect();
    exprs.push(Expr::Column(cot).alias(CONTRIBUTION));
    bp.contribute(LogicalPlanBuilder::from(bar.plan).project(exprs)?.build()?);
    Ok(vec![])
}
