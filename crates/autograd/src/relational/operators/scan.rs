//! Table scans: the leaves. Only a scan of a parameter's table has a
//! differentiable column; its contributions are recorded (summed per key
//! where they can be, see [`crate::relational::eager`]), to be summed per
//! row of the table at the end.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::{LogicalPlanBuilder, TableScan};

use super::Op;
use crate::relational::augment::{rename, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::eager::contributions;
use crate::relational::rule::{unsupported, Rule};

impl Op<'_, TableScan> {
    /// The parameters this scan reads, each with its column among the scan's outputs.
    fn parameters(&self, bp: &dyn Backprop) -> Vec<(usize, usize)> {
        bp.parameters()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_scanned_by(self.op))
            .filter_map(|(k, p)| p.column_of(self.op).map(|j| (k, j)))
            .collect()
    }
}

impl Rule for Op<'_, TableScan> {
    fn activity(&self, bp: &dyn Backprop, _: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        let mut active = vec![false; self.node.schema().fields().len()];
        for (_, j) in self.parameters(bp) {
            if self.op.fetch.is_some() {
                return unsupported(
                    self.node,
                    "a LIMIT on the parameter's table picks rows by position",
                );
            }
            active[j] = true;
        }
        Ok(active)
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let scan = self.op;
        // All of the table's columns: together they are what tells a row apart.
        let full = LogicalPlanBuilder::scan_with_filters(
            scan.table_name.clone(),
            scan.source.clone(),
            None,
            scan.filters.clone(),
        )?
        .build()?;
        let columns: Vec<_> = (0..full.schema().fields().len())
            .map(|k| bp.out_name(self.node, k))
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

    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        let Layout::Parameter { columns } = &bar.aug.layout else {
            return datafusion_common::internal_err!("an active scan is a parameter's table's");
        };
        for (k, j) in self.parameters(bp) {
            let Some(cot) = bar.cot[j].clone() else {
                continue;
            };
            bp.contribute(k, contributions(bp, bar.plan.clone(), columns, cot)?);
        }
        Ok(vec![])
    }
}
