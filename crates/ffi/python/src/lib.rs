//! `datafusion_autograd._native`: the Python face of the FFI library.
//!
//! The marker classes hand datafusion-ffi capsules to PyPI `datafusion`; the
//! functions expose the engine's SQL rewriting and the DataFrame API's
//! differentiation of serialized expressions. All logic lives in the Rust
//! crates; this module only converts.

use datafusion_autograd::{differentiate_sql, udf, ColumnTypes, Derivative};
use datafusion_autograd_ffi::codec::{expr_from_bytes, expr_to_bytes};
use datafusion_autograd_ffi::panics::catch_panic;
use datafusion_autograd_ffi::FFI_SimplifyingScalarUDF;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{Schema, SchemaRef};
use datafusion_common::arrow::ffi::FFI_ArrowSchema;
use datafusion_common::{plan_datafusion_err, plan_err, DataFusionError, TableReference};
use datafusion_ffi::udf::FFI_ScalarUDF;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule};

create_exception!(
    _native,
    AutogradError,
    PyValueError,
    "A derivative could not be formed: unsupported function, bad argument or malformed input."
);

fn py_err(e: DataFusionError) -> PyErr {
    AutogradError::new_err(e.to_string())
}

/// Runs the engine for the Python function `name`: its errors, and any panic
/// (malformed input can reach one in a dependency), become `AutogradError`s.
fn engine<T>(name: &str, run: impl FnOnce() -> datafusion_common::Result<T>) -> PyResult<T> {
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
                PyCapsule::new_with_value(py, FFI_ScalarUDF::from(udf($marker)), c"datafusion_scalar_udf")
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
    concat!("`grad(expression, column)`: ", datafusion_autograd::marker_summary!(grad))
);
marker_class!(
    JvpUDF,
    "JvpUDF",
    Derivative::Jvp,
    concat!("`jvp(expression, column, tangent)`: ", datafusion_autograd::marker_summary!(jvp))
);
marker_class!(
    VjpUDF,
    "VjpUDF",
    Derivative::Vjp,
    concat!("`vjp(expression, column, cotangent)`: ", datafusion_autograd::marker_summary!(vjp))
);

/// What the marker called `name` computes, in one line.
#[pyfunction]
fn summary(name: &str) -> PyResult<&'static str> {
    marker(name).map(Derivative::summary).map_err(py_err)
}

fn marker(name: &str) -> datafusion_common::Result<Derivative> {
    match Derivative::from_name(name) {
        Some(marker) => Ok(marker),
        None => plan_err!("unknown marker `{name}`; expected grad, jvp or vjp"),
    }
}

/// The derivative of a SQL expression with respect to a column, as SQL.
#[pyfunction]
fn differentiate(expr_sql: &str, wrt: &str) -> PyResult<String> {
    engine("differentiate", || differentiate_sql(expr_sql, wrt))
}

/// `sql` with every grad/jvp/vjp call replaced by its derivative, and every
/// `gradient(...)` call by the query that computes it; `tables(name)` gives a
/// table's pyarrow schema, or None when there is no such table.
#[pyfunction]
#[pyo3(signature = (sql, tables=None))]
fn rewrite_sql(sql: &str, tables: Option<Bound<'_, PyAny>>) -> PyResult<String> {
    let schemas = |table: &TableReference| schema_of(tables.as_ref(), table);
    engine("rewrite_sql", || {
        datafusion_autograd::rewrite_sql(sql, &schemas)
    })
}

/// The gradient of the loss query with respect to `wrt` ("table.column"), as
/// one SQL query; `tables(name)` gives a table's pyarrow schema, or None.
#[pyfunction]
fn gradient_sql(loss: &str, wrt: &str, tables: Bound<'_, PyAny>) -> PyResult<String> {
    let schemas = |table: &TableReference| schema_of(Some(&tables), table);
    engine("gradient_sql", || {
        datafusion_autograd::relational::gradient_sql(loss, wrt, &schemas)
    })
}

/// The schema `tables` gives for `table`, read through the Arrow C data
/// interface.
fn schema_of(
    tables: Option<&Bound<'_, PyAny>>,
    table: &TableReference,
) -> datafusion_common::Result<Option<SchemaRef>> {
    let Some(tables) = tables else {
        return Ok(None);
    };
    let failed = |e: PyErr| plan_datafusion_err!("reading the schema of table {table}: {e}");
    let found = tables.call1((table.to_string(),)).map_err(failed)?;
    if found.is_none() {
        return Ok(None);
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
    Ok(Some(Arc::new(Schema::try_from(ffi)?)))
}

/// Applies the marker `name` to serialized expressions and returns its
/// derivative, serialized: the DataFrame API's `grad`/`jvp`/`vjp`.
#[pyfunction]
fn derivative<'py>(
    py: Python<'py>,
    name: &str,
    args: Vec<Vec<u8>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let expand = || {
        let marker = marker(name)?;
        let args = args
            .iter()
            .map(|a| expr_from_bytes(a))
            .collect::<Result<Vec<_>, _>>()?;
        expr_to_bytes(&marker.expand(&args, ColumnTypes::Unknown)?)
    };
    Ok(PyBytes::new(py, &engine("derivative", expand)?))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GradUDF>()?;
    m.add_class::<JvpUDF>()?;
    m.add_class::<VjpUDF>()?;
    m.add_function(wrap_pyfunction!(differentiate, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite_sql, m)?)?;
    m.add_function(wrap_pyfunction!(gradient_sql, m)?)?;
    m.add_function(wrap_pyfunction!(derivative, m)?)?;
    m.add_function(wrap_pyfunction!(summary, m)?)?;
    m.add("NOT_SIMPLIFIED", datafusion_autograd::NOT_SIMPLIFIED)?;
    m.add("AutogradError", m.py().get_type::<AutogradError>())?;
    Ok(())
}
