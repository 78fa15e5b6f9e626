//! What a fuzz case must produce, and the checks that decide it.
//!
//! Every simplify call across FFI is compared with the same call made in this
//! process (the library's code, linked as an rlib): the boundary must carry
//! exactly the in-process result, an error with the same message, or, for a
//! panic, the producer's "simplify panicked" error. A derivative that comes
//! back must also be a valid expression (one expression, typed DOUBLE wherever
//! the arguments type-check) and, where its primal evaluates smoothly, match
//! central finite differences of the primal computed by DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, ListArray,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema, TimeUnit};
use datafusion::prelude::SessionContext;
use datafusion_autograd::{expand_markers, udf, AutogradOptions, ColumnTypes, Derivative};
use datafusion_autograd_ffi::codec::{exprs_from_bytes, exprs_to_bytes, schema_from_bytes};
use datafusion_autograd_ffi::panics::catch_panic;
use datafusion_autograd_ffi::{FFI_SimplifyResult, FFI_SimplifyingScalarUDF};
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, DFSchema, Result};
use datafusion_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion_expr::{cast, lit, Expr, ExprSchemable};

use super::rng::Rng;

/// The result of one simplify call.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Simplified(Expr),
    Error(String),
}

/// Calls the library's simplify across FFI and decodes what comes back.
/// `Err` is a breach of the protocol rather than a simplify error.
pub fn over_ffi(
    table: &FFI_SimplifyingScalarUDF,
    args: &[u8],
    schema: &[u8],
) -> std::result::Result<Outcome, String> {
    // SAFETY: the library's own function over its own live table; the byte
    // buffers are copied into buffers the callee owns.
    let result = unsafe { (table.simplify.simplify)(&table.simplify, args.into(), schema.into()) };
    match result {
        FFI_SimplifyResult::Simplified(bytes) => {
            let mut exprs = exprs_from_bytes(&bytes)
                .map_err(|e| format!("the derivative's bytes do not decode: {e}"))?;
            match (exprs.pop(), exprs.is_empty()) {
                (Some(expr), true) => Ok(Outcome::Simplified(expr)),
                _ => Err(format!(
                    "{} expressions came back, not one",
                    exprs.len() + 1
                )),
            }
        }
        FFI_SimplifyResult::Original => Err("a marker call was kept as it is".to_string()),
        FFI_SimplifyResult::Error(message) => Ok(Outcome::Error(message.to_string())),
    }
}

/// The same call in this process, as the producer makes it: decode, simplify,
/// encode; a panic becomes the producer's error message.
pub fn in_process(marker: Derivative, args: &[u8], schema: &[u8]) -> Outcome {
    let simplify = || -> Result<Expr> {
        let args = exprs_from_bytes(args)?;
        let schema = schema_from_bytes(schema)?;
        let info = SimplifyContext::builder()
            .with_schema(Arc::new(schema))
            .build();
        match udf(marker).simplify(args, &info)? {
            ExprSimplifyResult::Simplified(expr) => {
                let mut decoded = exprs_from_bytes(&exprs_to_bytes(&[expr])?)?;
                Ok(decoded.remove(0))
            }
            ExprSimplifyResult::Original(_) => panic!("a marker kept its call"),
        }
    };
    match catch_panic("simplify", simplify) {
        Ok(Ok(expr)) => Outcome::Simplified(expr),
        Ok(Err(e)) => Outcome::Error(e.to_string()),
        Err(message) => Outcome::Error(message),
    }
}

/// Whether a host would have planned the call `marker(args…)` over
/// `schema`: every argument has a type, and the marker accepts those types
/// (it takes numbers only). Malformed bytes can carry calls no host sends.
pub fn host_would_plan(marker: Derivative, args: &[Expr], schema: &DFSchema) -> bool {
    let types: Option<Vec<DataType>> = args.iter().map(|e| e.get_type(schema).ok()).collect();
    types.is_some_and(|types| udf(marker).coerce_types(&types).is_ok())
}

/// Checks that the derivative of a call a host would plan is a DOUBLE
/// expression over the same schema.
pub fn check_valid(derivative: &Expr, schema: &DFSchema) -> std::result::Result<(), String> {
    match derivative.get_type(schema) {
        Ok(DataType::Float64) => Ok(()),
        Ok(other) => Err(format!(
            "the derivative is {other}, not DOUBLE: {derivative}"
        )),
        Err(e) => Err(format!(
            "the derivative does not type-check: {e}\n  {derivative}"
        )),
    }
}

/// How a numeric check ended.
pub enum Numeric {
    /// The derivative matched finite differences at this many points.
    Matched(usize),
    /// The case cannot be checked numerically; the reason says why.
    NotApplicable(String),
}

/// Evaluates derivatives and primals with DataFusion.
pub struct NumericChecker {
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

/// Points per check.
const POINTS: usize = 4;
/// Step of the central differences.
const STEP: f64 = 1e-4;

impl NumericChecker {
    pub fn new() -> Self {
        Self {
            ctx: SessionContext::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        }
    }

    /// Compares `derivative`, the library's result for `marker(args…)`, with
    /// `multiplier · (central difference of the primal)` at random points,
    /// where the multiplier is 1 for grad and the third argument otherwise.
    pub fn check(
        &self,
        marker: Derivative,
        args: &[Expr],
        schema: &DFSchema,
        derivative: &Expr,
        rng: &mut Rng,
    ) -> std::result::Result<Numeric, String> {
        let not_applicable = |why: &str| Ok(Numeric::NotApplicable(why.to_string()));
        let Some(wrt) = column_of(&args[1]) else {
            return not_applicable("the second argument is not a column");
        };
        let Ok(wrt_index) = schema.index_of_column(&wrt) else {
            return not_applicable("the column is not in the schema");
        };
        let field = schema.field(wrt_index);
        if field.data_type() != &DataType::Float64 {
            return not_applicable("the column is not DOUBLE");
        }
        let Some(table) = single_bare_qualifier(schema) else {
            return not_applicable("the schema has no single plain table name");
        };
        let Some(batch) = points(schema, rng) else {
            return not_applicable("the schema has a type the checker does not generate");
        };
        let options = AutogradOptions::default();
        let Ok(primal) = expand_markers(args[0].clone(), ColumnTypes::Schema(schema), &options)
        else {
            return not_applicable("the primal's own markers do not expand");
        };
        let multiplier = match marker {
            Derivative::Grad => lit(1.0),
            Derivative::Jvp | Derivative::Vjp => args[2].clone(),
        };
        let shifted = |h: f64| shift(&primal, schema, wrt_index, h);
        let reference = vec![
            cast(multiplier, DataType::Float64),
            cast(shifted(STEP)?, DataType::Float64),
            cast(shifted(-STEP)?, DataType::Float64),
            cast(shifted(STEP / 2.0)?, DataType::Float64),
            cast(shifted(-STEP / 2.0)?, DataType::Float64),
        ];
        let _ = self.ctx.deregister_table(&table);
        self.ctx
            .register_batch(&table, batch)
            .map_err(|e| format!("registering the points: {e}"))?;
        // One query for all six columns; only when it fails, two more say
        // whether the primal or the derivative is to blame.
        let all = [reference.clone(), vec![derivative.clone()]].concat();
        let (reference, got) = match self.evaluate(&table, all) {
            Ok(mut columns) => {
                let got = columns.split_off(reference.len());
                (columns, got)
            }
            Err(_) if self.evaluate(&table, reference).is_err() => {
                return not_applicable("the primal does not evaluate");
            }
            Err(_) => {
                let e = self.evaluate(&table, vec![derivative.clone()]).err();
                let e = e.map(|e| e.to_string()).unwrap_or_default();
                return Err(format!(
                    "the derivative does not evaluate where the primal does: {e}\n  {derivative}"
                ));
            }
        };
        let [m, f_plus, f_minus, f_half_plus, f_half_minus] = &reference[..] else {
            unreachable!("five reference columns were selected")
        };
        let mut matched = 0;
        for row in 0..POINTS {
            let values = [m, f_plus, f_minus, f_half_plus, f_half_minus].map(|c| c[row]);
            let Some([m, fp, fm, fhp, fhm]) = values
                .iter()
                .map(|v| v.filter(|v| v.is_finite()))
                .collect::<Option<Vec<f64>>>()
                .map(|v| <[f64; 5]>::try_from(v).unwrap())
            else {
                continue;
            };
            let coarse = (fp - fm) / (2.0 * STEP);
            let fine = (fhp - fhm) / STEP;
            // Where halving the step changes the estimate, the primal is not
            // smooth enough at this point for differences to say anything.
            if (coarse - fine).abs() > 1e-6 * (1.0 + fine.abs()) {
                continue;
            }
            // Richardson extrapolation of the two estimates.
            let expected = m * (4.0 * fine - coarse) / 3.0;
            match got[0][row] {
                Some(d) if (d - expected).abs() <= 1e-5 * (1.0 + expected.abs()) => matched += 1,
                // The chain rule through an infinite intermediate (exp(x / 0)
                // at x < 0 is exp(−inf) = 0, times d(x / 0) = inf) gives NaN
                // in IEEE arithmetic, as the formula says, although the
                // primal is smooth there.
                _ if self.has_non_finite_intermediate(&table, &primal, row) => {}
                d => {
                    return Err(format!(
                        "at point {row} the derivative is {d:?}, finite differences give \
                         {expected}\n  derivative: {derivative}\n  primal: {primal}"
                    ))
                }
            }
        }
        Ok(if matched == 0 {
            Numeric::NotApplicable("the primal is not smooth and finite at any point".to_string())
        } else {
            Numeric::Matched(matched)
        })
    }

    /// Whether a subexpression of `primal` is infinite, NaN or NULL at `row`.
    fn has_non_finite_intermediate(&self, table: &str, primal: &Expr, row: usize) -> bool {
        let mut subexpressions = vec![];
        let _ = primal.apply(|e| {
            subexpressions.push(cast(e.clone(), DataType::Float64));
            Ok(TreeNodeRecursion::Continue)
        });
        // One at a time: a subexpression that is not a number does not count.
        subexpressions.into_iter().any(|e| {
            self.evaluate(table, vec![e])
                .is_ok_and(|values| !values[0][row].is_some_and(f64::is_finite))
        })
    }

    /// The values of `exprs` over the table, each as DOUBLE.
    fn evaluate(&self, table: &str, exprs: Vec<Expr>) -> Result<Vec<Vec<Option<f64>>>> {
        let exprs: Vec<Expr> = exprs
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.alias(format!("c{i}")))
            .collect();
        let batches = self
            .runtime
            .block_on(async { self.ctx.table(table).await?.select(exprs)?.collect().await })?;
        let mut columns = vec![vec![]; batches.first().map_or(0, |b| b.num_columns())];
        for batch in &batches {
            for (i, column) in batch.columns().iter().enumerate() {
                let column = cast_array(column, &DataType::Float64)?;
                let column = column.as_any().downcast_ref::<Float64Array>().unwrap();
                columns[i]
                    .extend((0..column.len()).map(|r| column.is_valid(r).then(|| column.value(r))));
            }
        }
        Ok(columns)
    }
}

/// The column a `wrt` argument names, looking through casts and aliases.
fn column_of(expr: &Expr) -> Option<Column> {
    match expr {
        Expr::Column(c) => Some(c.clone()),
        Expr::Cast(c) => column_of(&c.expr),
        Expr::TryCast(c) => column_of(&c.expr),
        Expr::Alias(a) => column_of(&a.expr),
        _ => None,
    }
}

/// `expr` with every reference to field `index` of `schema` replaced by
/// `reference + h`.
fn shift(
    expr: &Expr,
    schema: &DFSchema,
    index: usize,
    h: f64,
) -> std::result::Result<Expr, String> {
    expr.clone()
        .transform(|e| match &e {
            Expr::Column(c) if schema.index_of_column(c).ok() == Some(index) => {
                Ok(Transformed::yes(e + lit(h)))
            }
            _ => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
        .map_err(|e| e.to_string())
}

/// The one table name every field is qualified with, when it is a plain name.
fn single_bare_qualifier(schema: &DFSchema) -> Option<String> {
    let mut names = schema.iter().map(|(q, _)| q.map(|q| q.to_string()));
    let first = names.next()??;
    let plain = !first.is_empty() && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (plain && names.all(|n| n.as_deref() == Some(first.as_str()))).then_some(first)
}

/// [`POINTS`] rows of values for every field of `schema`: reals away from
/// zero on both sides, small integers, strings, booleans, decimals, lists of
/// reals and timestamps; `None` for any other type.
fn points(schema: &DFSchema, rng: &mut Rng) -> Option<RecordBatch> {
    let reals = |rng: &mut Rng| -> Vec<f64> {
        (0..POINTS)
            .map(|i| {
                let magnitude = rng.uniform(0.3, 2.5);
                if i % 2 == 0 {
                    magnitude
                } else {
                    -magnitude
                }
            })
            .collect()
    };
    let mut columns: Vec<ArrayRef> = vec![];
    for (_, field) in schema.iter() {
        let column: ArrayRef = match field.data_type() {
            DataType::Float64 => Arc::new(Float64Array::from(reals(rng))),
            DataType::Int64 => Arc::new(Int64Array::from_iter_values(
                (0..POINTS).map(|_| 1 + rng.below(4) as i64),
            )),
            DataType::Utf8 => Arc::new(StringArray::from_iter_values(
                (0..POINTS).map(|_| ["abc", "xyz"][rng.below(2)]),
            )),
            DataType::Boolean => Arc::new(BooleanArray::from_iter(
                (0..POINTS).map(|_| Some(rng.below(2) == 0)),
            )),
            DataType::Decimal128(precision, scale) => Arc::new(
                Decimal128Array::from_iter_values((0..POINTS).map(|_| rng.below(1000) as i128))
                    .with_precision_and_scale(*precision, *scale)
                    .ok()?,
            ),
            DataType::List(item) if item.data_type() == &DataType::Float64 => {
                Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
                    (0..POINTS).map(|_| Some(vec![Some(rng.uniform(-1.0, 1.0))])),
                ))
            }
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..POINTS).map(|_| rng.next_u64() as i64 >> 20),
                ))
            }
            _ => return None,
        };
        columns.push(cast_array(&column, field.data_type()).ok()?);
    }
    let fields: Vec<_> = schema.iter().map(|(_, f)| Arc::clone(f)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()
}
