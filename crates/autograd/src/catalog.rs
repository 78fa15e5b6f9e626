//! The relations of a host that plans SQL text itself, as the engine sees
//! them: tables by their schemas, views by their queries.

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::{Result, TableReference};

/// A relation a host knows by name.
#[derive(Clone, Debug, PartialEq)]
pub enum Relation {
    /// A table, known by its schema.
    Table(SchemaRef),
    /// A view, known by the SQL query that defines it.
    View(String),
}

/// The relations of a host, by the name a query gives them; `None` when
/// there is no such relation.
pub type Catalog<'a> = &'a dyn Fn(&TableReference) -> Result<Option<Relation>>;
