//! `grad`, `jvp` and `vjp` as scalar UDFs that DataFusion's planner differentiates.
//!
//! A marker never computes anything. Its [`ScalarUDFImpl::simplify`] returns
//! the derivative (see [`crate::forward::marker`]) as ordinary built-in expressions, so
//! the optimizer's SimplifyExpressions pass replaces every marker, wherever
//! the plan holds it: projections, aggregates, recursive CTEs, DML,
//! subqueries and views.

use std::sync::{Arc, LazyLock};

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::{exec_err, plan_err, Result};
use datafusion_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion_expr::{
    ColumnarValue, DocSection, Documentation, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TypeSignature, Volatility,
};

use crate::forward::marker::Derivative;
use crate::forward::reals::ColumnTypes;
use crate::forward::rules::WITH_DERIVATIVE;
use crate::options::AutogradOptions;

/// The words every marker's error contains when it reaches execution, because
/// its host never called `simplify`. Hosts test for them to tell that case
/// from other errors.
pub const NOT_SIMPLIFIED: &str = "the host did not call the function's simplify hook";

/// Where the markers appear in DataFusion's function documentation.
const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "Automatic differentiation",
    description: Some("Derivatives formed by the planner (datafusion-autograd)."),
};

/// The scalar UDF behind one marker.
#[derive(Debug)]
pub struct DerivativeUdf {
    derivative: Derivative,
    signature: Signature,
    documentation: Documentation,
}

impl PartialEq for DerivativeUdf {
    fn eq(&self, other: &Self) -> bool {
        self.derivative == other.derivative
    }
}

impl Eq for DerivativeUdf {}

impl std::hash::Hash for DerivativeUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.derivative.hash(state);
    }
}

impl DerivativeUdf {
    pub fn new(derivative: Derivative) -> Self {
        let mut documentation =
            Documentation::builder(DOC_SECTION, derivative.summary(), derivative.usage())
                .with_sql_example(format!("```sql\n{}\n```", derivative.example()));
        for (name, meaning) in derivative.arguments() {
            documentation = documentation.with_argument(*name, *meaning);
        }
        for other in Derivative::ALL.into_iter().filter(|d| *d != derivative) {
            documentation = documentation.with_related_udf(other.name());
        }
        Self {
            derivative,
            signature: signature(derivative),
            documentation: documentation.build(),
        }
    }

    pub fn derivative(&self) -> Derivative {
        self.derivative
    }
}

/// The markers' signature: user-defined, so that the arguments keep the types
/// they are written with (see [`DerivativeUdf::coerce_types`]), and one DOUBLE
/// argument list besides. That list is never chosen over the user-defined arm,
/// which accepts every call; it is there because `information_schema`, and
/// `SHOW FUNCTIONS` with it, lists a function's parameters only from argument
/// types its signature spells out.
fn signature(derivative: Derivative) -> Signature {
    let doubles = vec![DataType::Float64; derivative.arguments().len()];
    Signature::one_of(
        vec![TypeSignature::UserDefined, TypeSignature::Exact(doubles)],
        Volatility::Immutable,
    )
}

impl ScalarUDFImpl for DerivativeUdf {
    fn name(&self) -> &str {
        self.derivative.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Leaves the argument types alone: a coercion cast on the column
    /// argument would hide which column is meant. It never fails, as a
    /// failure would hand the call to the signature's DOUBLE arm, which
    /// coerces; the arguments are checked in `return_type`.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    /// Checks the arguments; the derivative is always DOUBLE.
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.derivative.check_arity(arg_types.len())?;
        for (i, t) in arg_types.iter().enumerate() {
            if !(t.is_numeric() || t.is_null()) {
                return plan_err!(
                    "argument {} of {} must be numeric, found {t}",
                    i + 1,
                    self.derivative.usage()
                );
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{}() reached execution: {NOT_SIMPLIFIED}, which is where the derivative is \
             computed. Register it on a DataFusion SessionContext whose optimizer runs \
             SimplifyExpressions (the default), or, from Python, use \
             datafusion_autograd.register(ctx)",
            self.name()
        )
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let options = AutogradOptions::from_config(info.config_options());
        let derivative =
            self.derivative
                .expand(&args, ColumnTypes::Schema(info.schema()), &options)?;
        Ok(ExprSimplifyResult::Simplified(derivative))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

static GRAD: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| new_udf(Derivative::Grad));
static JVP: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| new_udf(Derivative::Jvp));
static VJP: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| new_udf(Derivative::Vjp));

fn new_udf(derivative: Derivative) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(DerivativeUdf::new(derivative)))
}

/// The `grad` marker.
pub fn grad_udf() -> Arc<ScalarUDF> {
    Arc::clone(&GRAD)
}

/// The `jvp` marker.
pub fn jvp_udf() -> Arc<ScalarUDF> {
    Arc::clone(&JVP)
}

/// The `vjp` marker.
pub fn vjp_udf() -> Arc<ScalarUDF> {
    Arc::clone(&VJP)
}

/// The marker `derivative` stands for.
pub fn udf(derivative: Derivative) -> Arc<ScalarUDF> {
    match derivative {
        Derivative::Grad => grad_udf(),
        Derivative::Jvp => jvp_udf(),
        Derivative::Vjp => vjp_udf(),
    }
}

/// The three markers. [`crate::register`] registers them on a context.
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    Derivative::ALL.map(udf).to_vec()
}

/// Marker calls for the DataFrame API; the planner differentiates them.
pub mod expr_fn {
    use datafusion_expr::Expr;

    #[doc = concat!("`grad(expr, wrt)`, `wrt` a column expression. ", crate::marker_summary!(grad))]
    pub fn grad(expr: Expr, wrt: Expr) -> Expr {
        super::grad_udf().call(vec![expr, wrt])
    }

    #[doc = concat!("`jvp(expr, wrt, tangent)`. ", crate::marker_summary!(jvp))]
    pub fn jvp(expr: Expr, wrt: Expr, tangent: Expr) -> Expr {
        super::jvp_udf().call(vec![expr, wrt, tangent])
    }

    #[doc = concat!("`vjp(expr, wrt, cotangent)`. ", crate::marker_summary!(vjp))]
    pub fn vjp(expr: Expr, wrt: Expr, cotangent: Expr) -> Expr {
        super::vjp_udf().call(vec![expr, wrt, cotangent])
    }
}

/// The functions an expression arriving from outside (SQL text, protobuf
/// bytes) may call: DataFusion's built-in scalar functions followed by the
/// markers and `stop_gradient`.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    datafusion_functions::all_default_functions()
        .into_iter()
        .chain(udfs())
        .chain([stop_gradient_udf()])
        .collect()
}

/// `stop_gradient(expression)`: the value of `expression`, through which
/// nothing is differentiated (JAX's `lax.stop_gradient`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StopGradient {
    signature: Signature,
    documentation: Documentation,
}

impl StopGradient {
    fn new() -> Self {
        let documentation = Documentation::builder(
            DOC_SECTION,
            "The value of expression, through which no derivative passes: grad, jvp, vjp and \
             gradient() see a constant.",
            "stop_gradient(expression)",
        )
        .with_sql_example(
            "```sql\nSELECT grad(x * stop_gradient(x), x) FROM samples  -- x, not 2x\n```",
        )
        .with_argument("expression", "Any numeric expression.")
        .build();
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Any(1),
                    TypeSignature::Exact(vec![DataType::Float64]),
                ],
                Volatility::Immutable,
            ),
            documentation,
        }
    }
}

impl ScalarUDFImpl for StopGradient {
    fn name(&self) -> &str {
        "stop_gradient"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] if t.is_numeric() || t.is_null() => Ok(t.clone()),
            [t] => plan_err!("stop_gradient(expression) takes a number, found {t}"),
            _ => plan_err!(
                "stop_gradient(expression) takes 1 argument, got {}",
                arg_types.len()
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args[0].clone())
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

static STOP_GRADIENT: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(StopGradient::new())));

/// `stop_gradient`, which [`crate::register`] registers beside the markers.
pub fn stop_gradient_udf() -> Arc<ScalarUDF> {
    Arc::clone(&STOP_GRADIENT)
}

/// The planner's `__autograd_with_derivative(value, derivative, column)`:
/// `value`, whose derivative by `column` at this row is `derivative` (see
/// the forward rule of the same name). Only the planner writes it, inside a
/// marker, and the marker's derivative takes its place; evaluated, it is
/// `value`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WithDerivative {
    signature: Signature,
}

impl ScalarUDFImpl for WithDerivative {
    fn name(&self) -> &str {
        WITH_DERIVATIVE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args[0].clone())
    }
}

static WITH_DERIVATIVE_UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::new_from_impl(WithDerivative {
        signature: Signature::any(3, Volatility::Immutable),
    }))
});

/// `value`, whose derivative by `column` at this row is `derivative`.
pub(crate) fn with_derivative(value: Expr, derivative: Expr, column: Expr) -> Expr {
    WITH_DERIVATIVE_UDF.call(vec![value, derivative, column])
}

/// `expr` with every value carried with its derivative replaced by the value
/// itself: what a host without the planner's function computes.
pub(crate) fn given_values(expr: Expr) -> Result<Expr> {
    use datafusion_common::tree_node::{Transformed, TreeNode};
    expr.transform_up(|e| match e {
        Expr::ScalarFunction(f) if f.func.name() == WITH_DERIVATIVE => Ok(Transformed::yes(
            f.args.into_iter().next().expect("three arguments"),
        )),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}
