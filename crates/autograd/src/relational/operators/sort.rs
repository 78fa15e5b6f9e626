//! Sort: the same rows in another order, which a sum of contributions does
//! not see. With a LIMIT (`fetch`) the rows kept depend on the values
//! compared, which the reverse pass does not follow.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::logical_plan::Sort;

use super::{pass_down, Op};
use crate::relational::augment::{Augmented, Bar};
use crate::relational::backprop::Backprop;
use crate::relational::rule::{unsupported, Rule};

impl Rule for Op<'_, Sort> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        if self.op.fetch.is_some() {
            return unsupported(self.node, "a LIMIT keeps rows by the values it sorts");
        }
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        Ok(Augmented::same_rows_as(bp.forward(&self.op.input)?))
    }

    fn backward(&self, _: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        pass_down(bar)
    }
}
