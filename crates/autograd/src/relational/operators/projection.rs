//! Projection: each output row is computed from one input row, so a row's
//! contributions reach that input row through the derivatives of the
//! projected expressions: `cot(input col) = Σᵢ cot(outᵢ) · ∂eᵢ/∂col`, formed
//! by the scalar engine.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::logical_plan::Projection;
use datafusion_expr::Expr;

use super::Op;
use crate::relational::augment::{extend, Augmented, Bar, Layout};
use crate::relational::backprop::Backprop;
use crate::relational::pullback::pull_back;
use crate::relational::rule::Rule;
use crate::relational::substitution::{reads_active, Substitution};

impl Op<'_, Projection> {
    /// The projected expressions over the input's augmented plan.
    fn projected(&self, input: &Augmented) -> Result<Vec<Expr>> {
        let substitution = Substitution::new(self.op.input.schema(), &input.out);
        self.op
            .expr
            .iter()
            .map(|e| substitution.apply(&e.clone().unalias()))
            .collect()
    }
}

impl Rule for Op<'_, Projection> {
    fn activity(&self, _: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>> {
        let schema = self.op.input.schema();
        Ok(self
            .op
            .expr
            .iter()
            .map(|e| reads_active(e, schema, &inputs[0]))
            .collect())
    }

    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented> {
        let input = bp.forward(&self.op.input)?;
        let out = bp.out_names(self.node);
        let exprs = self
            .projected(&input)?
            .into_iter()
            .zip(&out)
            .map(|(e, name)| e.alias(name.name.clone()))
            .collect();
        Ok(Augmented {
            plan: extend(input.plan.clone(), exprs)?,
            out,
            layout: Layout::same_rows(input),
        })
    }

    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>> {
        let Layout::Rows { inputs, .. } = &bar.aug.layout else {
            return datafusion_common::internal_err!("a projection's rows are its input's");
        };
        let input = inputs[0].1.clone();
        let active = bp.active(&self.op.input)?;
        let pairs: Vec<(Expr, Expr)> = self
            .projected(&input)?
            .into_iter()
            .zip(&bar.cot)
            .filter_map(|(e, c)| Some((e, Expr::Column(c.clone()?))))
            .collect();
        let (cot, added) = pull_back(bp, &input, &active, &pairs, bar.plan.schema())?;
        if added.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![(
            0,
            Bar {
                plan: extend(bar.plan, added)?,
                aug: input,
                cot,
            },
        )])
    }
}
