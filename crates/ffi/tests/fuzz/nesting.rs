//! Payloads nested arbitrarily deep, written byte by byte: building them as
//! prost messages would recurse (and overflow) in the test itself.
//!
//! Messages are written back to front, so that wrapping the message built so
//! far in a field of an enclosing message costs only its tag and length.
//! Fields come out in the reverse of the order they were added in, which
//! protobuf decoders accept.

/// A protobuf message under construction, stored back to front.
struct Message {
    reversed: Vec<u8>,
}

impl Message {
    fn new() -> Self {
        Self { reversed: vec![] }
    }

    fn push_front(&mut self, bytes: &[u8]) {
        self.reversed.extend(bytes.iter().rev());
    }

    fn varint(mut value: u64) -> Vec<u8> {
        let mut out = vec![];
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// Adds a length-delimited field holding `content`.
    fn bytes_field(&mut self, tag: &[u8], content: &[u8]) {
        self.push_front(content);
        self.push_front(&Self::varint(content.len() as u64));
        self.push_front(tag);
    }

    /// Adds a varint field.
    fn varint_field(&mut self, tag: &[u8], value: u64) {
        self.push_front(&Self::varint(value));
        self.push_front(tag);
    }

    /// Makes everything written so far the content of one field of an
    /// enclosing message, which becomes the message under construction.
    fn wrap(&mut self, tag: &[u8]) {
        self.push_front(&Self::varint(self.reversed.len() as u64));
        self.push_front(tag);
    }

    fn into_bytes(mut self) -> Vec<u8> {
        self.reversed.reverse();
        self.reversed
    }
}

// Field tags (field number << 3 | wire type 2) of datafusion-proto messages.
const COLUMN_NAME: &[u8] = &[0x0a]; // Column.name = 1
const EXPR_COLUMN: &[u8] = &[0x0a]; // LogicalExprNode.column = 1
const EXPR_NEGATIVE: &[u8] = &[0x6a]; // LogicalExprNode.negative = 13
const NEGATIVE_EXPR: &[u8] = &[0x0a]; // NegativeNode.expr = 1
const LIST_EXPR: &[u8] = &[0x0a]; // LogicalExprList.expr = 1
const TYPE_FLOAT64: &[u8] = &[0x6a]; // ArrowType.FLOAT64 = 13
const TYPE_LIST: &[u8] = &[0xca, 0x01]; // ArrowType.LIST = 25
const LIST_FIELD: &[u8] = &[0x0a]; // List.field_type = 1
const FIELD_NAME: &[u8] = &[0x0a]; // Field.name = 1
const FIELD_TYPE: &[u8] = &[0x12]; // Field.arrow_type = 2
const FIELD_NULLABLE: &[u8] = &[0x18]; // Field.nullable = 3 (varint)
const DFFIELD_FIELD: &[u8] = &[0x0a]; // DfField.field = 1
const SCHEMA_COLUMNS: &[u8] = &[0x0a]; // DfSchema.columns = 1

/// One `LogicalExprNode`: `depth` negations of the column `x`.
pub fn negations_node(depth: usize) -> Vec<u8> {
    let mut m = Message::new();
    m.bytes_field(COLUMN_NAME, b"x");
    m.wrap(EXPR_COLUMN);
    for _ in 0..depth {
        m.wrap(NEGATIVE_EXPR);
        m.wrap(EXPR_NEGATIVE);
    }
    m.into_bytes()
}

/// A `LogicalExprList` holding [`negations_node`] as its one expression.
pub fn negations_list(depth: usize) -> Vec<u8> {
    let mut m = Message::new();
    m.bytes_field(LIST_EXPR, &negations_node(depth));
    m.into_bytes()
}

/// A `DfSchema` with one nullable field `l` of type
/// `List(List(…List(Float64)))`, `depth` lists deep.
pub fn nested_lists_schema(depth: usize) -> Vec<u8> {
    let mut m = Message::new();
    m.bytes_field(TYPE_FLOAT64, b"");
    for _ in 0..depth {
        // Field { name: "item", arrow_type: <m>, nullable: true } …
        m.wrap(FIELD_TYPE);
        m.varint_field(FIELD_NULLABLE, 1);
        m.bytes_field(FIELD_NAME, b"item");
        // … as List { field_type } as ArrowType { LIST }.
        m.wrap(LIST_FIELD);
        m.wrap(TYPE_LIST);
    }
    m.wrap(FIELD_TYPE);
    m.varint_field(FIELD_NULLABLE, 1);
    m.bytes_field(FIELD_NAME, b"l");
    m.wrap(DFFIELD_FIELD);
    m.wrap(SCHEMA_COLUMNS);
    m.into_bytes()
}
