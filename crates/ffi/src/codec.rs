//! Expressions and schemas as datafusion-proto bytes, the wire format of the
//! simplify protocol and of the Python DataFrame API.

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

/// Encodes `exprs` as one `LogicalExprList` message.
pub fn exprs_to_bytes(exprs: &[Expr]) -> Result<Vec<u8>> {
    let expr = serialize_exprs(exprs, &DefaultLogicalExtensionCodec {})?;
    Ok(LogicalExprList { expr }.encode_to_vec())
}

/// Decodes a `LogicalExprList` message, resolving functions among the built-ins.
pub fn exprs_from_bytes(bytes: &[u8]) -> Result<Vec<Expr>> {
    let list = LogicalExprList::decode(bytes)
        .map_err(|e| DataFusionError::Plan(format!("malformed expression bytes: {e}")))?;
    Ok(parse_exprs(
        &list.expr,
        &BUILTINS,
        &DefaultLogicalExtensionCodec {},
    )?)
}

/// Encodes one expression as a `LogicalExprNode` message, as DataFusion's
/// Python `Expr.to_bytes` does.
pub fn expr_to_bytes(expr: &Expr) -> Result<Vec<u8>> {
    Ok(serialize_expr(expr, &DefaultLogicalExtensionCodec {})?.encode_to_vec())
}

/// Decodes one `LogicalExprNode` message.
pub fn expr_from_bytes(bytes: &[u8]) -> Result<Expr> {
    let node = LogicalExprNode::decode(bytes)
        .map_err(|e| DataFusionError::Plan(format!("malformed expression bytes: {e}")))?;
    Ok(parse_expr(
        &node,
        &BUILTINS,
        &DefaultLogicalExtensionCodec {},
    )?)
}

/// Encodes a schema as a `DfSchema` message.
pub fn schema_to_bytes(schema: &DFSchema) -> Result<Vec<u8>> {
    Ok(DfSchema::try_from(schema)?.encode_to_vec())
}

/// Decodes a `DfSchema` message.
pub fn schema_from_bytes(bytes: &[u8]) -> Result<DFSchema> {
    let proto = DfSchema::decode(bytes)
        .map_err(|e| DataFusionError::Plan(format!("malformed schema bytes: {e}")))?;
    Ok(DFSchema::try_from(&proto)?)
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
