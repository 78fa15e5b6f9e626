//! `datafusion_autograd._native`: the Python face of the FFI library.
//!
//! The marker classes hand datafusion-ffi capsules to PyPI `datafusion`; the
//! functions expose the engine's SQL rewriting and the DataFrame API's
//! differentiation of serialized expressions. All logic lives in the Rust
//! crates; this module only converts.

mod cluster;
mod engines;
mod gradient;
mod host;

use datafusion_autograd::{
    differentiate_sql, error_kind, udf, AutogradOptions, ColumnTypes, Derivative, Dialect,
    ErrorKind, Relation,
};
use datafusion_autograd_ffi::codec::{expr_from_bytes, expr_to_bytes};
use datafusion_autograd_ffi::nesting::nesting;
use datafusion_autograd_ffi::panics::catch_panic;
use datafusion_autograd_ffi::FFI_SimplifyingScalarUDF;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::Schema;
use datafusion_common::arrow::ffi::FFI_ArrowSchema;
use datafusion_common::{plan_datafusion_err, plan_err, DataFusionError, TableReference};
use datafusion_ffi::udf::FFI_ScalarUDF;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule, PyDict};

create_exception!(
    _native,
    AutogradError,
    PyValueError,
    "A derivative could not be formed: unsupported function, bad argument or malformed input."
);
create_exception!(
    _native,
    UnsupportedOperation,
    AutogradError,
    "An operator or function with no derivative rule, named, with where it is."
);
create_exception!(
    _native,
    NotALoss,
    AutogradError,
    "The loss does not return one row with one numeric column, or is not deterministic."
);
create_exception!(
    _native,
    UnknownParameter,
    AutogradError,
    "No such table or column to differentiate by, or not numeric."
);
create_exception!(
    _native,
    LimitExceeded,
    AutogradError,
    "A size, depth or nesting limit was reached."
);

/// The Python exception for `e`: the class of its kind, if it has one.
pub(crate) fn py_err(e: DataFusionError) -> PyErr {
    let message = e.to_string().replace("External error: ", "");
    match error_kind(&e) {
        Some(ErrorKind::UnsupportedOperation) => UnsupportedOperation::new_err(message),
        Some(ErrorKind::NotALoss) => NotALoss::new_err(message),
        Some(ErrorKind::UnknownParameter) => UnknownParameter::new_err(message),
        Some(ErrorKind::LimitExceeded) => LimitExceeded::new_err(message),
        None => AutogradError::new_err(message),
    }
}

/// Runs the engine for the Python function `name`: its errors, and any panic
/// (malformed input can reach one in a dependency), become `AutogradError`s.
pub(crate) fn engine<T>(
    name: &str,
    run: impl FnOnce() -> datafusion_common::Result<T>,
) -> PyResult<T> {
    catch_panic(name, run)
        .map_err(AutogradError::new_err)?
        .map_err(py_err)
}

/// Defines the Python class of one marker.
macro_rules! marker_class {
    ($class:ident, $name:literal, $marker:expr, $doc:expr) => {
        #[doc = $doc]
        #[pyclass(name = $name, module = "datafusion_autograd._native", frozen)]
        pub struct $class;

        #[pymethods]
        impl $class {
            #[new]
            fn new() -> Self {
                Self
            }

            /// The marker as datafusion-ffi's scalar UDF, for `ScalarUDF.from_pycapsule`.
            fn __datafusion_scalar_udf__<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<Bound<'py, PyCapsule>> {
                PyCapsule::new_with_value(
                    py,
                    FFI_ScalarUDF::from(udf($marker)),
                    c"datafusion_scalar_udf",
                )
            }

            /// The marker with its simplify slot, for hosts that speak the
            /// simplify-over-FFI protocol (see the crate's README).
            fn __datafusion_autograd_scalar_udf__<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<Bound<'py, PyCapsule>> {
                PyCapsule::new_with_value(
                    py,
                    FFI_SimplifyingScalarUDF::from(udf($marker)),
                    c"datafusion_autograd_scalar_udf",
                )
            }

            fn __repr__(&self) -> &'static str {
                concat!($name, "()")
            }
        }
    };
}

marker_class!(
    GradUDF,
    "GradUDF",
    Derivative::Grad,
    concat!(
        "`grad(expression, column)`: ",
        datafusion_autograd::marker_summary!(grad)
    )
);
marker_class!(
    JvpUDF,
    "JvpUDF",
    Derivative::Jvp,
    concat!(
        "`jvp(expression, column, tangent)`: ",
        datafusion_autograd::marker_summary!(jvp)
    )
);
marker_class!(
    VjpUDF,
    "VjpUDF",
    Derivative::Vjp,
    concat!(
        "`vjp(expression, column, cotangent)`: ",
        datafusion_autograd::marker_summary!(vjp)
    )
);

/// `stop_gradient(expression)`: the value of `expression`, through which no
/// derivative passes.
#[pyclass(
    name = "StopGradientUDF",
    module = "datafusion_autograd._native",
    frozen
)]
pub struct StopGradientUDF;

#[pymethods]
impl StopGradientUDF {
    #[new]
    fn new() -> Self {
        Self
    }

    /// The function as datafusion-ffi's scalar UDF, for `ScalarUDF.from_pycapsule`.
    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_value(
            py,
            FFI_ScalarUDF::from(datafusion_autograd::stop_gradient_udf()),
            c"datafusion_scalar_udf",
        )
    }

    fn __repr__(&self) -> &'static str {
        "StopGradientUDF()"
    }
}

/// What the marker called `name` computes, in one line.
#[pyfunction]
fn summary(name: &str) -> PyResult<&'static str> {
    marker(name).map(Derivative::summary).map_err(py_err)
}

/// The engine's options, with the size limit given or the default.
pub(crate) fn options(max_derivative_nodes: Option<usize>) -> AutogradOptions {
    max_derivative_nodes.map_or_else(
        AutogradOptions::default,
        AutogradOptions::with_max_derivative_nodes,
    )
}

fn marker(name: &str) -> datafusion_common::Result<Derivative> {
    match Derivative::from_name(name) {
        Some(marker) => Ok(marker),
        None => plan_err!("unknown marker `{name}`; expected grad, jvp or vjp"),
    }
}

/// DataFusion's documentation of the marker called `name`: description,
/// syntax, sql_example and arguments (name, description pairs).
#[pyfunction]
fn documentation<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let udf = udf(marker(name).map_err(py_err)?);
    let Some(doc) = udf.documentation() else {
        return Err(py_err(plan_datafusion_err!("{name} has no documentation")));
    };
    let fields = PyDict::new(py);
    fields.set_item("description", &doc.description)?;
    fields.set_item("syntax", &doc.syntax_example)?;
    fields.set_item("sql_example", &doc.sql_example)?;
    fields.set_item("arguments", doc.arguments.clone().unwrap_or_default())?;
    Ok(fields)
}

/// The derivative of a SQL expression with respect to a column, as SQL for
/// the engine `dialect` (see `DIALECTS`).
#[pyfunction]
#[pyo3(signature = (expr_sql, wrt, dialect="datafusion"))]
fn differentiate(expr_sql: &str, wrt: &str, dialect: &str) -> PyResult<String> {
    let dialect: Dialect = dialect.parse().map_err(py_err)?;
    engine("differentiate", || {
        differentiate_sql(expr_sql, wrt, dialect)
    })
}

/// The query that checks `grad(expr, wrt)` against central differences on
/// every row of `relation` (a table name or a query).
#[pyfunction]
fn check_grad_sql(expr: &str, wrt: &str, relation: &str) -> PyResult<String> {
    engine("check_grad_sql", || {
        datafusion_autograd::check_grad_sql(expr, wrt, relation)
    })
}

/// The names of the functions and operators with a derivative rule.
#[pyfunction]
fn primitives() -> Vec<&'static str> {
    datafusion_autograd::primitives().collect()
}

/// `sql` with every grad/jvp/vjp call replaced by its derivative, and every
/// `gradient(...)` call by the query that computes it; `tables(name)` gives a
/// table's pyarrow schema, a view's SQL, or None when there is no such table.
#[pyfunction]
#[pyo3(signature = (sql, tables=None, max_derivative_nodes=None))]
fn rewrite_sql(
    sql: &str,
    tables: Option<Bound<'_, PyAny>>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<String> {
    let relations = HostRelations::new(tables.as_ref());
    let catalog = |table: &TableReference| relations.get(table);
    let options = options(max_derivative_nodes);
    engine("rewrite_sql", || {
        datafusion_autograd::rewrite_sql(sql, &catalog, &options)
    })
}

/// The gradient of the loss query with respect to `wrt` ("table.column"), as
/// one SQL query; `tables(name)` gives a table's pyarrow schema, a view's
/// SQL, or None.
#[pyfunction]
#[pyo3(signature = (loss, wrt, tables, max_derivative_nodes=None))]
fn gradient_sql(
    loss: &str,
    wrt: &str,
    tables: Bound<'_, PyAny>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<String> {
    let relations = HostRelations::new(Some(&tables));
    let catalog = |table: &TableReference| relations.get(table);
    let options = options(max_derivative_nodes);
    engine("gradient_sql", || {
        datafusion_autograd::gradient_sql(loss, wrt, &catalog, &options)
    })
}

/// The relations a Python function `tables(name)` gives — a view's SQL text
/// (a `str`), a table's schema (anything with `__arrow_c_schema__`, read
/// through the Arrow C data interface), or None — each name asked once:
/// planning asks at every scan of a table, and each answer is a call into
/// Python.
pub(crate) struct HostRelations<'a, 'py> {
    tables: Option<&'a Bound<'py, PyAny>>,
    known: RefCell<HashMap<TableReference, Option<Relation>>>,
}

impl<'a, 'py> HostRelations<'a, 'py> {
    pub(crate) fn new(tables: Option<&'a Bound<'py, PyAny>>) -> Self {
        Self {
            tables,
            known: RefCell::default(),
        }
    }

    /// What `tables` gives for `table`.
    pub(crate) fn get(
        &self,
        table: &TableReference,
    ) -> datafusion_common::Result<Option<Relation>> {
        if let Some(known) = self.known.borrow().get(table) {
            return Ok(known.clone());
        }
        let found = self.ask(table)?;
        self.known.borrow_mut().insert(table.clone(), found.clone());
        Ok(found)
    }

    fn ask(&self, table: &TableReference) -> datafusion_common::Result<Option<Relation>> {
        let Some(tables) = self.tables else {
            return Ok(None);
        };
        let failed = |e: PyErr| plan_datafusion_err!("reading the schema of table {table}: {e}");
        let found = tables.call1((table.to_string(),)).map_err(failed)?;
        if found.is_none() {
            return Ok(None);
        }
        if let Ok(view) = found.extract::<String>() {
            return Ok(Some(Relation::View(view)));
        }
        let capsule = found
            .call_method0("__arrow_c_schema__")
            .map_err(failed)?
            .cast_into::<PyCapsule>()
            .map_err(|e| failed(e.into()))?;
        let pointer = capsule
            .pointer_checked(Some(c"arrow_schema"))
            .map_err(failed)?;
        // SAFETY: an "arrow_schema" capsule holds an ArrowSchema, valid while the
        // capsule lives; it is only read here.
        let ffi = unsafe { &*(pointer.as_ptr() as *const FFI_ArrowSchema) };
        Ok(Some(Relation::Table(Arc::new(Schema::try_from(ffi)?))))
    }
}

/// How deeply PyPI datafusion's `Expr.from_bytes` decodes nested protobuf
/// messages: prost's default limit, which that build keeps.
const HOST_NESTING: usize = 100;

/// Applies the marker `name` to serialized expressions and returns its
/// derivative, serialized: the DataFrame API's `grad`/`jvp`/`vjp`. A
/// derivative the host could not decode is an error here.
#[pyfunction]
#[pyo3(signature = (name, args, max_derivative_nodes=None))]
fn derivative<'py>(
    py: Python<'py>,
    name: &str,
    args: Vec<Vec<u8>>,
    max_derivative_nodes: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let expand = || {
        let marker = marker(name)?;
        let args = args
            .iter()
            .map(|a| expr_from_bytes(a))
            .collect::<Result<Vec<_>, _>>()?;
        let options = options(max_derivative_nodes);
        let bytes = expr_to_bytes(&marker.expand(&args, ColumnTypes::Unknown, &options)?)?;
        if let Err(depth) = nesting(&bytes, HOST_NESTING) {
            return plan_err!(
                "the derivative nests {depth} or more protobuf messages deep, and datafusion's \
                 Expr.from_bytes reads at most {HOST_NESTING}; write the expression in SQL, \
                 where the bridge has no such limit"
            );
        }
        Ok(bytes)
    };
    Ok(PyBytes::new(py, &engine("derivative", expand)?))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GradUDF>()?;
    m.add_class::<JvpUDF>()?;
    m.add_class::<VjpUDF>()?;
    m.add_class::<StopGradientUDF>()?;
    m.add_function(wrap_pyfunction!(gradient::hvp, m)?)?;
    m.add_function(wrap_pyfunction!(differentiate, m)?)?;
    m.add_function(wrap_pyfunction!(check_grad_sql, m)?)?;
    m.add_class::<gradient::Gradient>()?;
    m.add_class::<gradient::Memo>()?;
    m.add_function(wrap_pyfunction!(rewrite_sql, m)?)?;
    m.add_function(wrap_pyfunction!(gradient::bridge_sql, m)?)?;
    m.add_function(wrap_pyfunction!(gradient::gradients, m)?)?;
    m.add_function(wrap_pyfunction!(gradient_sql, m)?)?;
    m.add_function(wrap_pyfunction!(engines::gradient_statements_for, m)?)?;
    m.add_function(wrap_pyfunction!(engines::engine_statements_for, m)?)?;
    m.add_function(wrap_pyfunction!(engines::view_query, m)?)?;
    m.add_function(wrap_pyfunction!(derivative, m)?)?;
    m.add_function(wrap_pyfunction!(summary, m)?)?;
    m.add_function(wrap_pyfunction!(documentation, m)?)?;
    m.add_function(wrap_pyfunction!(primitives, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::cluster_connect, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::serve_scheduler, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::serve_executor, m)?)?;
    m.add_class::<cluster::ClusterContext>()?;
    m.add_class::<cluster::ClusterFrame>()?;
    m.add("ClusterError", m.py().get_type::<cluster::ClusterError>())?;
    let dialects: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
    m.add("DIALECTS", pyo3::types::PyTuple::new(m.py(), dialects)?)?;
    m.add("NOT_SIMPLIFIED", datafusion_autograd::NOT_SIMPLIFIED)?;
    m.add("HOST_NESTING", HOST_NESTING)?;
    // Whether this extension was compiled with optimisations (a release build):
    // the benchmarks refuse to time a debug build.
    m.add("OPTIMIZED", cfg!(not(debug_assertions)))?;
    m.add("AutogradError", m.py().get_type::<AutogradError>())?;
    m.add(
        "UnsupportedOperation",
        m.py().get_type::<UnsupportedOperation>(),
    )?;
    m.add("NotALoss", m.py().get_type::<NotALoss>())?;
    m.add("UnknownParameter", m.py().get_type::<UnknownParameter>())?;
    m.add("LimitExceeded", m.py().get_type::<LimitExceeded>())?;
    Ok(())
}
