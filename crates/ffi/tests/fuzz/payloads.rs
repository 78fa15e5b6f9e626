//! The valid payloads that fuzz cases mutate: marker calls planned by a real
//! `SessionContext`, so that the argument and schema bytes are exactly what a
//! host's planner sends across at simplify time (after type coercion).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_autograd::Derivative;
use datafusion_autograd_ffi::codec::{exprs_to_bytes, schema_to_bytes};
use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_expr::{Expr, LogicalPlan};

/// Marker calls over `t(x, y, dx DOUBLE, i BIGINT, s VARCHAR)` and
/// `u(x, y DOUBLE, d DECIMAL, b BOOLEAN, l LIST, ts TIMESTAMP)`, chosen to put
/// many kinds of expression node, literal and column type on the wire.
pub const CALLS: &[(&str, &str)] = &[
    ("t", "grad(sin(x) * y + exp(x / 4), x)"),
    ("t", "grad(power(x, 3) - ln(abs(x) + 1), x)"),
    ("t", "jvp(tanh(x * y), x, dx)"),
    ("t", "vjp(sqrt(x * x + 1) * cos(y), y, 0.5)"),
    ("t", "grad(CASE WHEN x > 0 THEN x * x ELSE -x END, x)"),
    ("t", "grad(coalesce(x, y) * greatest(x, 0.5), x)"),
    ("t", "grad(atan2(y, x) + i * x, x)"),
    ("t", "grad(grad(x * x * x, x), x)"),
    ("t", "jvp(x + character_length(s), x, 2)"),
    ("t", "grad(log(2.0, x) + x % 3, x)"),
    ("t", "grad(nullif(x, 0) + nvl2(y, x, 1), x)"),
    ("t", "vjp(t.x * t.y - cbrt(t.x), t.x, t.dx)"),
    (
        "t",
        "grad(CASE WHEN s LIKE 'a%' AND i IN (1, 2, 3) THEN x ELSE -x * y END, x)",
    ),
    ("u", "grad(x * d + CASE WHEN b THEN x ELSE y END, x)"),
    ("u", "jvp(x * y, x, CAST(ts IS NULL AS DOUBLE))"),
];

/// A call over `t` planned with `parse_float_as_decimal`, so that its
/// argument bytes carry a Decimal128 literal.
pub const DECIMAL_CALL: &str = "grad(x * 1.50 + sin(x), x)";

/// One marker call as a host's planner hands it to `simplify`.
pub struct Payload {
    pub marker: Derivative,
    /// The call as written in SQL.
    pub call: String,
    /// `args` as one `LogicalExprList` message.
    pub args_bytes: Vec<u8>,
    /// `schema` as a `DfSchema` message.
    pub schema_bytes: Vec<u8>,
}

fn table_t() -> Schema {
    Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("y", DataType::Float64, true),
        Field::new("dx", DataType::Float64, true),
        Field::new("i", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ])
}

fn table_u() -> Schema {
    Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("y", DataType::Float64, true),
        Field::new("d", DataType::Decimal128(10, 2), true),
        Field::new("b", DataType::Boolean, true),
        Field::new(
            "l",
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
            true,
        ),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ])
}

/// Every payload of [`CALLS`] and [`DECIMAL_CALL`], planned and analyzed by
/// a real session.
pub fn payloads() -> Vec<Payload> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plan = |ctx: &SessionContext, table: &str, call: &str| {
        let sql = format!("SELECT {call} FROM {table}");
        let state = ctx.state();
        let plan = runtime
            .block_on(state.create_logical_plan(&sql))
            .unwrap_or_else(|e| panic!("planning `{sql}`: {e}"));
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .unwrap_or_else(|e| panic!("analyzing `{sql}`: {e}"));
        payload(call, &plan)
    };
    let ctx = context(SessionConfig::new());
    let decimals = context(
        SessionConfig::new().set_bool("datafusion.sql_parser.parse_float_as_decimal", true),
    );
    CALLS
        .iter()
        .map(|(table, call)| plan(&ctx, table, call))
        .chain([plan(&decimals, "t", DECIMAL_CALL)])
        .collect()
}

/// A session with the markers and the tables `t` and `u`.
fn context(config: SessionConfig) -> SessionContext {
    let ctx = SessionContext::new_with_config(config);
    datafusion_autograd::register(&ctx);
    for (name, schema) in [("t", table_t()), ("u", table_u())] {
        let table = MemTable::try_new(Arc::new(schema), vec![vec![]]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }
    ctx
}

/// The outermost marker call in the projection `plan`, with its input schema.
fn payload(call: &str, plan: &LogicalPlan) -> Payload {
    let LogicalPlan::Projection(projection) = plan else {
        panic!("`{call}` did not plan as a projection:\n{plan}");
    };
    let mut found = None;
    projection.expr[0]
        .apply(|e| {
            if let Expr::ScalarFunction(f) = e {
                if let Some(marker) = Derivative::from_name(f.func.name()) {
                    found = Some((marker, f.args.clone()));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
    let (marker, args) = found.unwrap_or_else(|| panic!("no marker in `{call}`"));
    let schema = projection.input.schema();
    Payload {
        marker,
        call: call.to_string(),
        args_bytes: exprs_to_bytes(&args).unwrap(),
        schema_bytes: schema_to_bytes(schema).unwrap(),
    }
}
