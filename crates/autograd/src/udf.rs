//! `grad`, `jvp` and `vjp`: marker UDFs that DataFusion's planner differentiates.
//!
//! A marker never computes anything. Its [`ScalarUDFImpl::simplify`] returns
//! the derivative as ordinary built-in expressions, so the optimizer's
//! SimplifyExpressions pass replaces every marker, wherever the plan holds it:
//! projections, aggregates, recursive CTEs, DML, subqueries and views.

use std::sync::{Arc, LazyLock};

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{exec_err, plan_err, Column, DFSchema, Result};
use datafusion_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion_expr::{
    cast, lit, ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;

use crate::linearize::{is_condition, Linearizer};

/// Which derivative a marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Derivative {
    /// `grad(expr, column)` = ∂expr/∂column
    Grad,
    /// `jvp(expr, column, tangent)` = ∂expr/∂column · tangent
    Jvp,
    /// `vjp(expr, column, cotangent)` = cotangent · ∂expr/∂column
    Vjp,
}

impl Derivative {
    pub const ALL: [Derivative; 3] = [Derivative::Grad, Derivative::Jvp, Derivative::Vjp];

    /// The SQL function name.
    pub fn name(self) -> &'static str {
        match self {
            Derivative::Grad => "grad",
            Derivative::Jvp => "jvp",
            Derivative::Vjp => "vjp",
        }
    }

    /// The marker's scalar UDF.
    pub fn udf(self) -> Arc<ScalarUDF> {
        match self {
            Derivative::Grad => grad_udf(),
            Derivative::Jvp => jvp_udf(),
            Derivative::Vjp => vjp_udf(),
        }
    }

    /// The marker called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    fn usage(self) -> &'static str {
        match self {
            Derivative::Grad => "grad(expression, column)",
            Derivative::Jvp => "jvp(expression, column, tangent)",
            Derivative::Vjp => "vjp(expression, column, cotangent)",
        }
    }

    fn arity(self) -> usize {
        match self {
            Derivative::Grad => 2,
            Derivative::Jvp | Derivative::Vjp => 3,
        }
    }

    fn check_arity(self, n: usize) -> Result<()> {
        if n != self.arity() {
            return plan_err!("{} takes {} arguments, got {n}", self.usage(), self.arity());
        }
        Ok(())
    }

    /// The derivative this marker stands for, as an expression over the
    /// marker's own inputs. With a schema, the result is type-coerced and
    /// DOUBLE, ready to replace the marker in a plan.
    pub fn expand(self, args: &[Expr], schema: Option<&DFSchema>) -> Result<Expr> {
        self.check_arity(args.len())?;
        let Some(wrt) = column_of(&args[1]) else {
            return plan_err!(
                "the second argument of {} must be a column reference, found `{}`",
                self.usage(),
                args[1]
            );
        };
        let (tangent, cotangent) = match self {
            Derivative::Grad => (lit(1.0_f64), None),
            Derivative::Jvp => (args[2].clone(), None),
            Derivative::Vjp => (lit(1.0_f64), Some(args[2].clone())),
        };
        let seeds = [(wrt, tangent)];
        let mut derivative = Linearizer::new(&seeds, schema).tangent_of(&args[0])?;
        if let Some(cotangent) = cotangent {
            derivative = derivative.times(cotangent);
        }
        let derivative = derivative.into_expr();
        match schema {
            // The common case needs no second typing pass over the derivative,
            // which is far larger than its inputs.
            Some(schema) if args.iter().all(|a| computes_in_double(a, schema)) => Ok(derivative),
            Some(schema) => as_double(derivative, schema),
            None => Ok(derivative),
        }
    }
}

/// The column a `wrt` argument names, looking through casts the planner added.
fn column_of(expr: &Expr) -> Option<Column> {
    match expr {
        Expr::Column(c) | Expr::OuterReferenceColumn(_, c) => Some(c.clone()),
        Expr::Cast(c) => column_of(&c.expr),
        Expr::TryCast(c) => column_of(&c.expr),
        Expr::Alias(a) => column_of(&a.expr),
        _ => None,
    }
}

/// Whether every number `expr` computes is a DOUBLE (conditions aside). A
/// derivative built from such pieces and DOUBLE literals is DOUBLE throughout.
fn computes_in_double(expr: &Expr, schema: &DFSchema) -> bool {
    let mut double = true;
    let _ = expr.apply(|e| {
        if is_condition(e) {
            return Ok(TreeNodeRecursion::Jump);
        }
        double = matches!(e.get_type(schema), Ok(DataType::Float64));
        Ok(if double {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    double
}

/// Types `expr` the way the analyzer would have, then makes it DOUBLE, the
/// markers' declared return type.
fn as_double(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let expr = expr.rewrite(&mut TypeCoercionRewriter::new(schema))?.data;
    Ok(match expr.get_type(schema)? {
        DataType::Float64 => expr,
        _ => cast(expr, DataType::Float64),
    })
}

/// Replaces every marker call inside `expr` by its derivative, innermost first.
pub(crate) fn expand_markers(expr: Expr, schema: Option<&DFSchema>) -> Result<Expr> {
    expr.transform_up(|e| match &e {
        Expr::ScalarFunction(f) => match Derivative::from_name(f.func.name()) {
            Some(d) => Ok(Transformed::yes(d.expand(&f.args, schema)?)),
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// The scalar UDF behind one marker.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DerivativeUdf {
    derivative: Derivative,
    signature: Signature,
}

impl DerivativeUdf {
    pub fn new(derivative: Derivative) -> Self {
        Self {
            derivative,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    pub fn derivative(&self) -> Derivative {
        self.derivative
    }
}

impl ScalarUDFImpl for DerivativeUdf {
    fn name(&self) -> &str {
        self.derivative.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the arguments and leaves their types alone: a coercion cast on
    /// the column argument would hide which column is meant.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
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
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{}() reached execution: the host did not call the function's simplify hook, \
             which is where the derivative is computed. Register it on a DataFusion \
             SessionContext whose optimizer runs SimplifyExpressions (the default), or, from \
             Python, use datafusion_autograd.register(ctx)",
            self.name()
        )
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let derivative = self.derivative.expand(&args, Some(info.schema()))?;
        Ok(ExprSimplifyResult::Simplified(derivative))
    }
}

static GRAD: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| udf(Derivative::Grad));
static JVP: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| udf(Derivative::Jvp));
static VJP: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| udf(Derivative::Vjp));

fn udf(derivative: Derivative) -> Arc<ScalarUDF> {
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

/// The three markers, ready for `SessionContext::register_udf`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use datafusion::prelude::SessionContext;
///
/// let ctx = SessionContext::new();
/// for udf in datafusion_autograd::udfs() {
///     ctx.register_udf(udf.as_ref().clone());
/// }
/// let df = ctx.sql("SELECT grad(x * x * x, x) AS d FROM (VALUES (2.0)) AS t(x)").await.unwrap();
/// let batches = df.collect().await.unwrap();
/// # });
/// ```
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    Derivative::ALL.map(Derivative::udf).to_vec()
}

/// Marker calls for the DataFrame API; the planner differentiates them.
pub mod expr_fn {
    use datafusion_expr::Expr;

    /// `grad(expr, wrt)`: ∂expr/∂wrt, with `wrt` a column expression.
    pub fn grad(expr: Expr, wrt: Expr) -> Expr {
        super::grad_udf().call(vec![expr, wrt])
    }

    /// `jvp(expr, wrt, tangent)`: ∂expr/∂wrt · tangent.
    pub fn jvp(expr: Expr, wrt: Expr, tangent: Expr) -> Expr {
        super::jvp_udf().call(vec![expr, wrt, tangent])
    }

    /// `vjp(expr, wrt, cotangent)`: cotangent · ∂expr/∂wrt.
    pub fn vjp(expr: Expr, wrt: Expr, cotangent: Expr) -> Expr {
        super::vjp_udf().call(vec![expr, wrt, cotangent])
    }
}
