//! Filter: a row's contributions reach the input row it is.
//!
//! The predicate only selects rows; it is piecewise constant in the values it
//! compares, so it passes no derivative of its own. That includes
//! uncorrelated `IN`, `NOT IN` and `EXISTS` subqueries, even over the
//! parameter's table: which rows match is piecewise constant too.

use std::rc::Rc;

use datafusion_common::tree_node::TreeNode;
use datafusion_common::Result;
use datafusion_expr::logical_plan::Filter;
use datafusion_expr::{Expr, LogicalPlanBuilder};

use super::{pass_down, Op};
use crate::relational::augment::{Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::rule::{unsupported, Rule};
use crate::relational::substitution::Substitution;

impl Rule for Op<'_, Filter> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let filter = self.op;
        if filter.predicate.contains_outer() || has_correlated_subquery(&filter.predicate)? {
            return unsupported(self.node, "its condition is a correlated subquery");
        }
        let input = bp.forward(&filter.input)?;
        let predicate =
            Substitution::new(filter.input.schema(), &input.out).apply(&filter.predicate)?;
        let plan = LogicalPlanBuilder::from(input.plan.clone())
            .filter(predicate)?
            .build()?;
        Ok(Augmented {
            plan,
            out: input.out.clone(),
            layout: Layout::same_rows(input),
        })
    }

    fn backward(&self, _: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        pass_down(bar)
    }
}

fn has_correlated_subquery(expr: &Expr) -> Result<bool> {
    expr.exists(|e| {
        Ok(match e {
            Expr::ScalarSubquery(s) => !s.outer_ref_columns.is_empty(),
            Expr::Exists(e) => !e.subquery.outer_ref_columns.is_empty(),
            Expr::InSubquery(i) => !i.subquery.outer_ref_columns.is_empty(),
            _ => false,
        })
    })
}
