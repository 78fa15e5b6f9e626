//! Whole-query gradients in a stock PyPI `datafusion` host: tables of ours
//! that the host registers or reads, computed in this library when the
//! host's query runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use datafusion::catalog::TableProvider;
use datafusion::datasource::provider_as_source;
use datafusion_autograd::relational::Staged;
use datafusion_autograd::{
    plan_gradients, plan_hvp, rewrite_sql_kept, Along, GradientTable, Placement, PlanMemo,
    Relation, StatementMemo,
};
use datafusion_common::{plan_datafusion_err, Result, TableReference};
use datafusion_expr::TableSource;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::host::{export, HostTable, HostTableSize};
use crate::{engine, options, HostRelations};

/// A gradient as a table a `SessionContext` of PyPI `datafusion` can
/// register or read: every row of the parameter's table, all its columns,
/// and `grad`, computed when a query that reads it runs.
#[pyclass(module = "datafusion_autograd._native", frozen)]
pub(crate) struct Gradient {
    table: Arc<dyn TableProvider>,
}

#[pymethods]
impl Gradient {
    /// The table as datafusion-ffi's provider; `session` is the host's context.
    fn __datafusion_table_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        export(py, Arc::clone(&self.table), &session)
    }

    fn __repr__(&self) -> String {
        let columns: Vec<String> = self
            .table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        format!("Gradient({})", columns.join(", "))
    }
}

/// The plans of `staged` over the host's tables, one table per result, all
/// sharing one computation of the stages; with `memo`, their physical plans
/// copied from an earlier statement's where they fit.
fn gradient_tables(
    staged: &Staged,
    catalog: &HostRelations,
    fetch: &Arc<Py<PyAny>>,
    memo: Option<Arc<PlanMemo>>,
) -> Result<Vec<Gradient>> {
    // One source per table, however many scans read it and however they
    // name it (`w` and `datafusion.public.w`, the engine's planner's defaults):
    // finding it asks the host's planner for the table's size.
    let found: RefCell<HashMap<TableReference, Option<Arc<dyn TableSource>>>> = RefCell::default();
    let sources = |table: &TableReference| -> Result<Option<Arc<dyn TableSource>>> {
        let resolved = TableReference::from(table.clone().resolve("datafusion", "public"));
        if let Some(source) = found.borrow().get(&resolved) {
            return Ok(source.clone());
        }
        let source = host_source(table, catalog, fetch)?;
        found.borrow_mut().insert(resolved, source.clone());
        Ok(source)
    };
    let staged = Arc::new(staged.with_sources(&sources)?);
    let tables = match memo {
        Some(memo) => GradientTable::sharing_kept(staged, memo),
        None => GradientTable::sharing(staged),
    };
    Ok(tables
        .into_iter()
        .map(|table| Gradient {
            table: Arc::new(table),
        })
        .collect())
}

/// The host's table `table`, read through `fetch`; None for a view or an
/// unknown name.
fn host_source(
    table: &TableReference,
    catalog: &HostRelations,
    fetch: &Arc<Py<PyAny>>,
) -> Result<Option<Arc<dyn TableSource>>> {
    let Some(Relation::Table(schema)) = catalog.get(table)? else {
        return Ok(None);
    };
    let (rows, size) = Python::attach(|py| {
        let found = fetch.bind(py).call1((table.to_string(),))?;
        let (rows, size): (Bound<'_, PyAny>, Option<(usize, usize, bool)>) = found.extract()?;
        PyResult::Ok((rows.unbind(), size))
    })
    .map_err(|e| plan_datafusion_err!("looking up the table {table}: {e}"))?;
    let size = size.map(|(rows, bytes, exact)| HostTableSize { rows, bytes, exact });
    let host = HostTable::new(table.to_string(), schema, rows, size);
    Ok(Some(provider_as_source(Arc::new(host))))
}

/// The gradients of the loss query with respect to each `"<table>.<column>"`
/// of `wrt`, from one pass; `tables(name)` gives a table's pyarrow schema, a
/// view's SQL, or None; `fetch(name)` how to read a table's rows, and the
/// table's size as the host's planner knows it (see
/// `datafusion_autograd.tables.fetcher`).
#[pyfunction]
#[pyo3(signature = (loss, wrt, tables, fetch, max_derivative_nodes=None))]
pub(crate) fn gradients(
    loss: &str,
    wrt: Vec<String>,
    tables: Bound<'_, PyAny>,
    fetch: Py<PyAny>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<Vec<Gradient>> {
    let relations = HostRelations::new(Some(&tables));
    let catalog = |table: &TableReference| relations.get(table);
    let options = options(max_derivative_nodes);
    let fetch = Arc::new(fetch);
    engine("gradients", || {
        let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let staged = plan_gradients(loss, &wrt, &catalog, &options)?;
        gradient_tables(&staged, &relations, &fetch, None)
    })
}

/// Numbers the gradient tables a statement registers, so that their names never meet.
static REGISTERED: AtomicUsize = AtomicUsize::new(0);

/// What a context keeps of the statements it had rewritten, so that a
/// statement sent again (a training loop's step) is neither formed nor
/// planned again while the relations it reads keep their schemas and sizes:
/// the rewritten text and passes of each statement, and the physical plans
/// of each pass.
#[pyclass(module = "datafusion_autograd._native", frozen)]
#[derive(Default)]
pub(crate) struct Memo {
    statements: StatementMemo,
    /// Each kept pass's plans, while the pass is kept.
    plans: Mutex<Vec<(Weak<Staged>, Arc<PlanMemo>)>>,
}

impl Memo {
    /// The plans kept for `staged`, made the first time it is asked for.
    fn plans(&self, staged: &Arc<Staged>) -> Arc<PlanMemo> {
        let mut plans = self.plans.lock().expect("never poisoned");
        plans.retain(|(pass, _)| pass.strong_count() > 0);
        let known = plans
            .iter()
            .find(|(pass, _)| std::ptr::eq(pass.as_ptr(), Arc::as_ptr(staged)));
        match known {
            Some((_, memo)) => Arc::clone(memo),
            None => {
                let memo = Arc::new(PlanMemo::default());
                plans.push((Arc::downgrade(staged), Arc::clone(&memo)));
                memo
            }
        }
    }
}

#[pymethods]
impl Memo {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// How often statements were formed from their text and rewritten from
    /// what was kept, and how often the passes kept now were planned and
    /// run from copies of their plans.
    fn statistics(&self) -> HashMap<&'static str, usize> {
        let plans = self.plans.lock().expect("never poisoned");
        let live = plans.iter().filter(|(pass, _)| pass.strong_count() > 0);
        let (planned, copied) = live.fold((0, 0), |(p, c), (_, memo)| {
            (p + memo.planned(), c + memo.copied())
        });
        HashMap::from([
            ("formed", self.statements.formed()),
            ("reused", self.statements.reused()),
            ("planned", planned),
            ("copied", copied),
        ])
    }
}

/// `sql` with every grad/jvp/vjp call replaced by its derivative, and every
/// gradient it asks for (a `gradient(...)` call, or a marker over a whole
/// query) read from a table to register on the host while it plans the
/// statement: returns the text and `(name, table)` pairs. `tables` and
/// `fetch` are as for `gradients`; with `memo`, a statement rewritten
/// before is rewritten from what it keeps (see `Memo`).
#[pyfunction]
#[pyo3(signature = (sql, tables, fetch, max_derivative_nodes=None, memo=None))]
pub(crate) fn bridge_sql(
    sql: &str,
    tables: Bound<'_, PyAny>,
    fetch: Py<PyAny>,
    max_derivative_nodes: Option<usize>,
    memo: Option<Bound<'_, Memo>>,
) -> PyResult<(String, Vec<(String, Gradient)>)> {
    let relations = HostRelations::new(Some(&tables));
    let catalog = |table: &TableReference| relations.get(table);
    let options = options(max_derivative_nodes);
    let fetch = Arc::new(fetch);
    let memo = memo.as_ref().map(|m| m.get());
    let mut host = Host {
        catalog: &relations,
        fetch: &fetch,
        memo,
        registered: vec![],
        bound: vec![],
    };
    let text = engine("bridge_sql", || match memo {
        Some(memo) => rewrite_sql_kept(sql, &catalog, &options, &mut host, &memo.statements),
        None => datafusion_autograd::rewrite_sql_with(sql, &catalog, &options, &mut host),
    })?;
    Ok((text, host.registered))
}

/// A pass's results, one table each.
type Tables = Vec<Arc<dyn TableProvider>>;

/// The gradients of one statement, as the host will read them.
struct Host<'a, 'py> {
    catalog: &'a HostRelations<'a, 'py>,
    fetch: &'a Arc<Py<PyAny>>,
    memo: Option<&'a Memo>,
    registered: Vec<(String, Gradient)>,
    /// Each pass's tables, by the pass, so that its results share it.
    bound: Vec<(Arc<Staged>, Tables)>,
}

impl Placement for Host<'_, '_> {
    fn table(&mut self, staged: &Arc<Staged>, k: usize) -> Result<String> {
        let known = self.bound.iter().position(|(s, _)| Arc::ptr_eq(s, staged));
        let tables = match known {
            Some(at) => &self.bound[at].1,
            None => {
                let plans = self.memo.map(|memo| memo.plans(staged));
                let tables = gradient_tables(staged, self.catalog, self.fetch, plans)?
                    .into_iter()
                    .map(|g| g.table)
                    .collect();
                self.bound.push((Arc::clone(staged), tables));
                &self.bound.last().expect("just pushed").1
            }
        };
        let name = format!(
            "__ag_gradient{}",
            REGISTERED.fetch_add(1, Ordering::Relaxed)
        );
        let table = Gradient {
            table: Arc::clone(&tables[k]),
        };
        self.registered.push((name.clone(), table));
        Ok(name)
    }

    /// The tables of one pass share its stages: the loss's row is read where
    /// the pass keeps it.
    fn serves_the_loss(&self) -> bool {
        true
    }
}

/// The Hessian-vector product of the loss query with respect to `wrt`
/// along `tangent`: a number (the same at every row) or a SQL query of the
/// table's other columns and `tangent`. The table it returns has every row
/// of the parameter's table, all its columns, `grad` and `hvp`.
#[pyfunction]
#[pyo3(signature = (loss, wrt, tangent, tables, fetch, max_derivative_nodes=None))]
pub(crate) fn hvp(
    loss: &str,
    wrt: &str,
    tangent: Bound<'_, PyAny>,
    tables: Bound<'_, PyAny>,
    fetch: Py<PyAny>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<Gradient> {
    let relations = HostRelations::new(Some(&tables));
    let catalog = |table: &TableReference| relations.get(table);
    let options = options(max_derivative_nodes);
    let fetch = Arc::new(fetch);
    let along = match tangent.extract::<f64>() {
        Ok(v) => Along::Everywhere(v),
        Err(_) => Along::Rows(tangent.extract::<String>()?),
    };
    engine("hvp", || {
        let staged = plan_hvp(loss, wrt, &along, &catalog, &options)?;
        let mut tables = gradient_tables(&staged, &relations, &fetch, None)?;
        Ok(tables.remove(0))
    })
}
