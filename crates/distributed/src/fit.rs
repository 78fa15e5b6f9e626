//! Fitting y = a·exp(b·x) to a table `points(x, y)` by gradient descent, one
//! query per step: the client drives the loop, the cluster computes each
//! gradient. (The one-statement loop, a recursive CTE, does not run on
//! Ballista; see the README.)

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

/// A point in parameter space: the parameters, or a gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub a: f64,
    pub b: f64,
}

/// Where the descent starts.
pub const START: Params = Params { a: 1.0, b: 0.0 };

pub const LEARNING_RATE: f64 = 0.1;

impl Params {
    /// One step of gradient descent against `gradient`.
    pub fn step(self, gradient: Params) -> Params {
        Params {
            a: self.a - LEARNING_RATE * gradient.a,
            b: self.b - LEARNING_RATE * gradient.b,
        }
    }
}

/// The query for the gradient of the mean squared error at `p`.
///
/// The parameters are written in Rust's shortest round-trip form, so every
/// session that runs the query computes with exactly the same numbers.
pub fn gradient_sql(p: Params) -> String {
    let Params { a, b } = p;
    format!(
        "SELECT AVG(grad(power(a * exp(b * x) - y, 2), a)) AS da, \
                AVG(grad(power(a * exp(b * x) - y, 2), b)) AS db \
         FROM (SELECT x, y, CAST({a:?} AS DOUBLE) AS a, CAST({b:?} AS DOUBLE) AS b FROM points)"
    )
}

/// The gradient at `p`, computed by `ctx`.
pub async fn gradient(ctx: &SessionContext, p: Params) -> Result<Params> {
    let batches = ctx.sql(&gradient_sql(p)).await?.collect().await?;
    let row = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| DataFusionError::Execution("the gradient query returned no row".into()))?;
    let value = |i: usize| {
        let column = row
            .column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .filter(|c| !c.is_null(0))
            .ok_or_else(|| {
                DataFusionError::Execution("the gradient is not a DOUBLE value".into())
            })?;
        Ok::<_, DataFusionError>(column.value(0))
    };
    Ok(Params {
        a: value(0)?,
        b: value(1)?,
    })
}
