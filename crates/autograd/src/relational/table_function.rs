//! `gradient('<loss query>', '<table>.<column>')`: the table function that
//! plans a loss and returns its gradient as a table, computed in stages when
//! the statement that reads it runs.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::execution::SessionState;
use datafusion_common::{plan_err, Result, ScalarValue};
use datafusion_expr::Expr;
use futures::FutureExt;

use super::{gradient, GradientTable, Parameter};
use crate::options::AutogradOptions;

/// The `gradient` table function.
#[derive(Debug, Default)]
pub struct GradientFunction;

impl TableFunctionImpl for GradientFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [loss, wrt] = args.exprs() else {
            return plan_err!(
                "gradient('<loss query>', '<table>.<column>') takes 2 arguments, got {}",
                args.exprs().len()
            );
        };
        let (Some(loss), Some(wrt)) = (text(loss), text(wrt)) else {
            return plan_err!(
                "gradient('<loss query>', '<table>.<column>') takes two string literals"
            );
        };
        let Some(state) = args.session().as_any().downcast_ref::<SessionState>() else {
            return plan_err!("gradient() needs a DataFusion SessionState to plan its loss query");
        };
        let loss_plan = plan_loss(state, loss)?;
        let parameter = Parameter::from_session(state, wrt)?;
        let options = AutogradOptions::from_config(state.config_options());
        let staged = gradient(&loss_plan, &parameter, &options)?;
        Ok(Arc::new(GradientTable::new(staged)))
    }
}

fn text(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

/// The analyzed plan of `sql`, planned without waiting on the catalogs (a
/// table function is called while the outer statement is planned).
pub(crate) fn plan_loss(state: &SessionState, sql: &str) -> Result<datafusion_expr::LogicalPlan> {
    let Some(plan) = state.create_logical_plan(sql).now_or_never() else {
        return plan_err!(
            "gradient(): the loss query reads a table that is not available without waiting \
             on its catalog; register its tables in memory first"
        );
    };
    let plan = plan.map_err(|e| e.context("gradient(): planning the loss query"))?;
    state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
}
