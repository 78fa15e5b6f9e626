//! Gradients of whole queries as tables of a session: the `gradient()`
//! table function, and the table provider that runs a gradient's plans.
//!
//! Planning a statement that reads a gradient computes nothing; running it
//! plans every stage and computes each the first time it is read.

mod build_side;
mod markers;
mod memo;
mod result;
mod stages;

pub use markers::WholeQueryMarkers;
pub use memo::PlanMemo;

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SessionState;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::tree_node::TreeNodeRecursion;
use datafusion_common::{plan_err, DataFusionError, Result, ScalarValue, TableReference};
use datafusion_expr::{Expr, LogicalPlan, TableType};
use futures::FutureExt;

use crate::error::fail;
use crate::options::AutogradOptions;
use crate::relational::{gradients, Parameter, Staged};
use build_side::engine_state;
use memo::Planned;
use result::GradientExec;
use tokio::sync::OnceCell;

/// The `gradient('<loss query>', '<table>.<column>')` table function.
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
        let loss = plan_loss(state, loss)?;
        let parameter = parameter(state, wrt)?;
        let options = AutogradOptions::from_config(state.config_options());
        let staged = gradients(&loss, &[parameter], &options)?;
        Ok(Arc::new(GradientTable::new(Arc::new(staged), 0)))
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
pub(crate) fn plan_loss(state: &SessionState, sql: &str) -> Result<LogicalPlan> {
    let Some(plan) = state.create_logical_plan(sql).now_or_never() else {
        return plan_err!(
            "gradient(): the loss query reads a table that is not available without waiting \
             on its catalog; register its tables in memory first"
        );
    };
    let plan = plan.map_err(|e| e.context("gradient(): planning the loss query"))?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    refuse_gradients(&plan)?;
    Ok(plan)
}

/// An error if `loss` reads the result of `gradient()`: its dependence on
/// the parameter is not followed.
fn refuse_gradients(loss: &LogicalPlan) -> Result<()> {
    let mut found = None;
    loss.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let reads = source_as_provider(&scan.source)
                .is_ok_and(|p| (p.as_ref() as &dyn Any).is::<GradientTable>());
            if reads {
                found = Some(scan.table_name.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match found {
        Some(table) => fail!(
            UnsupportedOperation,
            "gradient(): the loss reads {table}, the result of gradient(), whose dependence on \
             the parameter is not followed: derivatives of gradients are taken with markers \
             inside one query, or with hvp"
        ),
        None => Ok(()),
    }
}

/// `"<table>.<column>"` among the tables of `state`.
pub(crate) fn parameter(state: &SessionState, wrt: &str) -> Result<Parameter> {
    let (table, column) = Parameter::parse(wrt)?;
    let options = state.config_options();
    let catalog = &options.catalog.default_catalog;
    let schema = &options.catalog.default_schema;
    let provider = table_provider(state, &table)?;
    Parameter::new(table, column, provider_as_source(provider), catalog, schema)
}

/// The provider of `table` in `state`'s catalogs, found without waiting: a
/// table function is planned synchronously.
fn table_provider(state: &SessionState, table: &TableReference) -> Result<Arc<dyn TableProvider>> {
    let schema = state.schema_for_ref(table.clone())?;
    match schema.table(table.table()).now_or_never() {
        Some(Ok(Some(provider))) => Ok(provider),
        Some(Ok(None)) => fail!(UnknownParameter, "gradient(): table '{table}' not found"),
        Some(Err(e)) => Err(e),
        None => plan_err!(
            "gradient(): the table '{table}' is not available without waiting on its catalog; \
             register it in memory (for example as a view or table of the session)"
        ),
    }
}

/// A gradient as a table: result `k` of a [`Staged`], whose stages are planned
/// and computed when a statement that reads it runs.
#[derive(Clone, Debug)]
pub struct GradientTable {
    staged: Arc<Staged>,
    k: usize,
    schema: SchemaRef,
    /// Stages shared with the other results of the same pass: planned by the
    /// first scan of any of them, computed once, kept while any lives.
    shared: Option<Arc<OnceCell<Arc<Planned>>>>,
    /// Plans kept from the statements before, to run again (see [`PlanMemo`]).
    memo: Option<Arc<PlanMemo>>,
}

impl GradientTable {
    /// Result `k` of `staged`, its stages computed for each statement that
    /// reads it.
    pub fn new(staged: Arc<Staged>, k: usize) -> Self {
        let schema = staged.schema(k);
        Self {
            staged,
            k,
            schema,
            shared: None,
            memo: None,
        }
    }

    /// Every result of `staged`, one table each, sharing one computation
    /// of the stages: the gradients of several parameters from one pass.
    pub fn sharing(staged: Arc<Staged>) -> Vec<Self> {
        let shared = Arc::new(OnceCell::new());
        (0..staged.results.len())
            .map(|k| Self {
                shared: Some(Arc::clone(&shared)),
                ..Self::new(Arc::clone(&staged), k)
            })
            .collect()
    }

    /// [`GradientTable::sharing`], its physical plans copied from those
    /// `memo` keeps of an earlier statement for the same pass where they fit,
    /// and kept there otherwise: for a host that asks for one gradient
    /// again and again, its tables' rows changing in between.
    pub fn sharing_kept(staged: Arc<Staged>, memo: Arc<PlanMemo>) -> Vec<Self> {
        Self::sharing(staged)
            .into_iter()
            .map(|table| Self {
                memo: Some(Arc::clone(&memo)),
                ..table
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for GradientTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("a gradient's plans are made in a DataFusion SessionState");
        };
        let state = engine_state(state, self.memo.is_some());
        let memo = self.memo.as_deref();
        let planned = match &self.shared {
            Some(shared) => Arc::clone(
                shared
                    .get_or_try_init(|| async {
                        Ok::<_, DataFusionError>(Arc::new(
                            Planned::new(&state, &self.staged, memo).await?,
                        ))
                    })
                    .await?,
            ),
            None => Arc::new(Planned::new(&state, &self.staged, memo).await?),
        };
        let plan = planned.result(&state, self.k, projection).await?;
        let hold = planned.lease.clone().map(|lease| lease as _);
        Ok(Arc::new(GradientExec::new(plan, hold)))
    }
}
