//! Expressions and schemas as datafusion-proto bytes, the wire format of the
//! simplify protocol and of the Python DataFrame API.
//!
//! Bytes from elsewhere are measured before they are decoded (see
//! [`crate::nesting`]): deeper than [`MAX_NESTING`] messages is an error that
//! names the depth. Encoding and decoding run on a stack with room for the
//! nesting, measured without recursion.

use std::sync::{Arc, LazyLock};

use datafusion_common::{DFSchema, DataFusionError, Result};
use datafusion_execution::TaskContext;
use datafusion_expr::registry::FunctionRegistry;
use datafusion_expr::Expr;
use datafusion_proto::logical_plan::from_proto::{parse_expr, parse_exprs};
use datafusion_proto::logical_plan::to_proto::{serialize_expr, serialize_exprs};
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::protobuf::{DfSchema, LogicalExprList, LogicalExprNode};
use prost::Message;

use datafusion_autograd::expression_depth;

use crate::nesting::nesting;

/// Functions resolvable when decoding: DataFusion's built-in scalar functions
/// and the markers. Function calls travel by name.
static BUILTINS: LazyLock<TaskContext> = LazyLock::new(|| {
    let mut registry = TaskContext::default();
    for udf in datafusion_autograd::scalar_functions() {
        // Registration into a fresh registry only reports a replaced entry.
        let _ = registry.register_udf(Arc::clone(&udf));
    }
    registry
});

/// The deepest nesting of protobuf messages decoded: an expression nests about
/// two messages per level, so this is expressions about 10,000 calls deep.
pub const MAX_NESTING: usize = 20_000;

/// The stack datafusion-proto and prost may take per message, encoding or
/// decoding: measured at about 24 KiB in an unoptimized build, less in an
/// optimized one.
const STACK_PER_MESSAGE: usize = 32 * 1024;

/// The most messages one level of an expression becomes (a function call is
/// the call, its argument list and the argument).
const MESSAGES_PER_LEVEL: usize = 4;

/// Runs `f`, which encodes or decodes `messages` nested messages, on a stack
/// with room for them.
fn with_room_for_messages<T>(messages: usize, f: impl FnOnce() -> T) -> T {
    // Built on the caller's stack: what a static holds is then allocated where
    // leak checkers can see who allocated it.
    LazyLock::force(&BUILTINS);
    let room = messages.saturating_mul(STACK_PER_MESSAGE) + 128 * 1024;
    stacker::maybe_grow(room, room + 1024 * 1024, f)
}

/// Runs `f`, which encodes `exprs`, on a stack with room for their nesting.
fn with_room_to_encode<T>(exprs: &[&Expr], f: impl FnOnce() -> T) -> T {
    let depth = exprs.iter().map(|e| expression_depth(e)).max().unwrap_or(0);
    with_room_for_messages(depth.saturating_mul(MESSAGES_PER_LEVEL), f)
}

/// Decodes `bytes` with `decode` after measuring how deeply they nest.
fn decode_measured<T>(
    bytes: &[u8],
    what: &str,
    decode: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    let depth = nesting(bytes, MAX_NESTING).map_err(|depth| {
        DataFusionError::Plan(format!(
            "{what} nest more than {MAX_NESTING} protobuf messages deep (found at least \
             {depth}); the limit keeps decoding within bounds"
        ))
    })?;
    with_room_for_messages(depth, || decode(bytes))
}

/// Encodes `exprs` as one `LogicalExprList` message.
pub fn exprs_to_bytes(exprs: &[Expr]) -> Result<Vec<u8>> {
    with_room_to_encode(&exprs.iter().collect::<Vec<_>>(), || {
        let expr = serialize_exprs(exprs, &DefaultLogicalExtensionCodec {})?;
        Ok(LogicalExprList { expr }.encode_to_vec())
    })
}

/// Decodes a `LogicalExprList` message, resolving functions among the built-ins.
pub fn exprs_from_bytes(bytes: &[u8]) -> Result<Vec<Expr>> {
    decode_measured(bytes, "expression bytes", |bytes| {
        let list = LogicalExprList::decode(bytes)
            .map_err(|e| DataFusionError::Plan(format!("malformed expression bytes: {e}")))?;
        Ok(parse_exprs(
            &list.expr,
            &BUILTINS,
            &DefaultLogicalExtensionCodec {},
        )?)
    })
}

/// Encodes one expression as a `LogicalExprNode` message, as DataFusion's
/// Python `Expr.to_bytes` does.
pub fn expr_to_bytes(expr: &Expr) -> Result<Vec<u8>> {
    with_room_to_encode(&[expr], || {
        Ok(serialize_expr(expr, &DefaultLogicalExtensionCodec {})?.encode_to_vec())
    })
}

/// Decodes one `LogicalExprNode` message.
pub fn expr_from_bytes(bytes: &[u8]) -> Result<Expr> {
    decode_measured(bytes, "expression bytes", |bytes| {
        let node = LogicalExprNode::decode(bytes)
            .map_err(|e| DataFusionError::Plan(format!("malformed expression bytes: {e}")))?;
        Ok(parse_expr(
            &node,
            &BUILTINS,
            &DefaultLogicalExtensionCodec {},
        )?)
    })
}

/// Encodes a schema as a `DfSchema` message.
pub fn schema_to_bytes(schema: &DFSchema) -> Result<Vec<u8>> {
    Ok(DfSchema::try_from(schema)?.encode_to_vec())
}

/// Decodes a `DfSchema` message.
pub fn schema_from_bytes(bytes: &[u8]) -> Result<DFSchema> {
    decode_measured(bytes, "schema bytes", |bytes| {
        let proto = DfSchema::decode(bytes)
            .map_err(|e| DataFusionError::Plan(format!("malformed schema bytes: {e}")))?;
        Ok(DFSchema::try_from(&proto)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_expr::{col, lit};
    use datafusion_functions::math::expr_fn::sin;

    #[test]
    fn round_trip() {
        let exprs = vec![
            sin(col("t.x")) * lit(2.0),
            datafusion_autograd::expr_fn::grad(col("x"), col("x")),
        ];
        assert_eq!(
            exprs_from_bytes(&exprs_to_bytes(&exprs).unwrap()).unwrap(),
            exprs
        );
    }

    #[test]
    fn malformed_bytes_are_an_error() {
        let e = exprs_from_bytes(&[0xff, 0x01, 0x02])
            .unwrap_err()
            .to_string();
        assert!(e.contains("malformed expression bytes"), "{e}");
        let e = schema_from_bytes(&[0x0a, 0xff]).unwrap_err().to_string();
        assert!(e.contains("malformed schema bytes"), "{e}");
    }
}
