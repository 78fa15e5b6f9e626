//! A check users can run: a derivative against central differences, on every
//! row of their own data (what JAX's `check_grads` is for functions).

use datafusion::prelude::SessionContext;
use datafusion_common::arrow::array::{Array, AsArray};
use datafusion_common::arrow::datatypes::{Float64Type, Int64Type};
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{plan_err, Column, Result};
use datafusion_expr::{col, lit, Expr};

use super::{plan_scalar, to_sql};
use crate::forward::marker::expand_markers;
use crate::forward::reals::ColumnTypes;
use crate::options::AutogradOptions;
use crate::stack::with_room;

/// The step of a central difference, relative to the point: the cube root of
/// the double's machine epsilon balances truncation against rounding.
const RELATIVE_STEP: f64 = 6.055454452393339e-6;

/// What [`check_grad`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    /// Rows of the relation.
    pub rows: i64,
    /// Rows where the central difference is finite, so the derivative was
    /// checked.
    pub checked: i64,
    /// The largest `|grad − difference| / max(1, |difference|)`; NaN when
    /// some derivative is NaN where the difference is not, or nothing was
    /// checked.
    pub worst_error: f64,
    /// At the worst row: the value of the column, the derivative and the
    /// central difference.
    pub at: f64,
    pub grad: f64,
    pub difference: f64,
}

/// The query that checks `grad(expr, wrt)` on every row of `relation` (a
/// table name or a query) against the central difference of `expr` in `wrt`, and returns
/// one row: `rows`, `checked`, `worst_error`, `at`, `grad`, `difference` (see
/// [`GradCheck`]; no row when the relation is empty). It is plain SQL around
/// a `grad` marker, for any session that differentiates markers.
///
/// ```
/// use datafusion_autograd::check_grad_sql;
///
/// let sql = check_grad_sql("sin(x) * y", "x", "SELECT * FROM samples").unwrap();
/// assert!(sql.contains("grad(sin(x) * y, x)"));
/// ```
pub fn check_grad_sql(expr: &str, wrt: &str, relation: &str) -> Result<String> {
    let relation = relation.trim();
    let relation = if is_table_name(relation) {
        format!("SELECT * FROM {relation}")
    } else {
        relation.to_string()
    };
    with_room(|| {
        let (exprs, _) = plan_scalar(&[expr, wrt])?;
        let Expr::Column(column) = &exprs[1] else {
            return plan_err!(
                "the variable to differentiate by must be a column name, found `{wrt}`"
            );
        };
        // The markers inside are differentiated first: the shifted copies
        // must not shift a marker's own variable.
        let primal = expand_markers(
            exprs[0].clone(),
            ColumnTypes::Real,
            &AutogradOptions::default(),
        )?;
        let shifted = |sign: f64| -> Result<String> {
            let moved = col(column.clone()) + lit(sign) * col(STEP);
            let expr = replace(primal.clone(), column, &moved)?;
            to_sql(&expr)
        };
        let (plus, minus) = (shifted(1.0)?, shifted(-1.0)?);
        let at = to_sql(&Expr::Column(column.clone()))?;
        let marker = to_sql(&crate::forward::udf::expr_fn::grad(
            exprs[0].clone(),
            exprs[1].clone(),
        ))?;
        Ok(format!(
            "WITH __ag_probe AS (\
               SELECT *, {RELATIVE_STEP:e} * greatest(1.0, abs({at})) AS {STEP} \
               FROM ({relation}\n) AS __ag_relation), \
             __ag_points AS (\
               SELECT CAST({at} AS DOUBLE) AS at, CAST({marker} AS DOUBLE) AS grad, \
                      (({plus}) - ({minus})) / (2.0 * {STEP}) AS difference \
               FROM __ag_probe), \
             __ag_errors AS (\
               SELECT at, grad, difference, \
                      CASE WHEN isnan(difference) OR abs(difference) = CAST('inf' AS DOUBLE) THEN NULL \
                           ELSE abs(grad - difference) / greatest(1.0, abs(difference)) END AS error \
               FROM __ag_points) \
             SELECT COUNT(*) OVER () AS rows, COUNT(error) OVER () AS checked, \
                    error AS worst_error, at, grad, difference \
             FROM __ag_errors ORDER BY error DESC NULLS LAST LIMIT 1"
        ))
    })
}

/// Whether `relation` names a table (`samples`, `s.samples`, `"My table"`)
/// rather than being a query.
fn is_table_name(relation: &str) -> bool {
    let mut quoted = false;
    !relation.is_empty()
        && relation.chars().all(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            quoted || c == '"' || c == '.' || c == '_' || c.is_alphanumeric()
        })
}

/// The column the shifted copies of an expression read their step from.
const STEP: &str = "__ag_step";

/// `expr` with `column` replaced by `by`.
fn replace(expr: Expr, column: &Column, by: &Expr) -> Result<Expr> {
    expr.transform_up(|e| match &e {
        Expr::Column(c) if c == column => Ok(Transformed::yes(by.clone())),
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Checks `grad(expr, wrt)` on every row of `relation` (a table name or a
/// query) against
/// central differences, in `ctx` (which must differentiate markers; see
/// [`crate::register`]), and reports the worst row.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use datafusion::prelude::SessionContext;
///
/// let ctx = SessionContext::new();
/// datafusion_autograd::register(&ctx);
/// let relation = "SELECT * FROM (VALUES (0.5), (1.5), (-2.0)) AS t(x)";
/// let check = datafusion_autograd::check_grad(&ctx, "exp(x) * sin(x)", "x", relation)
///     .await
///     .unwrap();
/// assert_eq!(check.checked, 3);
/// assert!(check.worst_error < 1e-8);
/// # });
/// ```
pub async fn check_grad(
    ctx: &SessionContext,
    expr: &str,
    wrt: &str,
    relation: &str,
) -> Result<GradCheck> {
    let batches = ctx
        .sql(&check_grad_sql(expr, wrt, relation)?)
        .await?
        .collect()
        .await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return plan_err!("check_grad: the relation has no rows");
    };
    let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().value(0);
    // NULL (nothing checked) reads as NaN, which no tolerance accepts.
    let float = |i: usize| {
        let column = batch.column(i).as_primitive::<Float64Type>();
        if column.is_null(0) {
            f64::NAN
        } else {
            column.value(0)
        }
    };
    Ok(GradCheck {
        rows: int(0),
        checked: int(1),
        worst_error: float(2),
        at: float(3),
        grad: float(4),
        difference: float(5),
    })
}
