//! Subquery alias (also how CTEs and views appear in a plan): the same rows
//! under another name. Augmented plans name their columns themselves, so the
//! alias changes nothing in them.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::logical_plan::SubqueryAlias;

use super::{pass_down, Op};
use crate::relational::augment::{Augmented, Bar};
use crate::relational::backprop::Backprop;
use crate::relational::rule::Rule;

impl Rule for Op<'_, SubqueryAlias> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        Ok(Augmented::same_rows_as(bp.forward(&self.op.input)?))
    }

    fn backward(&self, _: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        pass_down(bar)
    }
}
