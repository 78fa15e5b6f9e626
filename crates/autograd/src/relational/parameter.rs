//! The table columns a gradient is taken with respect to.

use std::sync::Arc;

use datafusion_common::{Column, ResolvedTableReference, Result, TableReference};
use datafusion_expr::{LogicalPlan, LogicalPlanBuilder, TableScan, TableSource};

use crate::error::fail;

/// A numeric column of a table: `w1.w` in `gradient('…', 'w1.w')`.
#[derive(Clone)]
pub struct Parameter {
    table: ResolvedTableReference,
    column: String,
    source: Arc<dyn TableSource>,
    default_catalog: String,
    default_schema: String,
}

impl Parameter {
    /// The column `column` of the table `table`, read through `source`.
    /// Table names in a loss are resolved against `default_catalog` and
    /// `default_schema`, as the session that planned it does.
    pub fn new(
        table: TableReference,
        column: impl Into<String>,
        source: Arc<dyn TableSource>,
        default_catalog: &str,
        default_schema: &str,
    ) -> Result<Self> {
        let column = column.into();
        let schema = source.schema();
        let Ok(field) = schema.field_with_name(&column) else {
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return fail!(
                UnknownParameter,
                "the table {table} has no column `{column}`; its columns are {}",
                columns.join(", ")
            );
        };
        if !field.data_type().is_numeric() {
            return fail!(
                UnknownParameter,
                "{table}.{column} must be numeric to differentiate by, found {}",
                field.data_type()
            );
        }
        Ok(Self {
            table: table.resolve(default_catalog, default_schema),
            column,
            source,
            default_catalog: default_catalog.to_string(),
            default_schema: default_schema.to_string(),
        })
    }

    /// `"<table>.<column>"` split into the table and the column.
    pub fn parse(wrt: &str) -> Result<(TableReference, String)> {
        match wrt.rsplit_once('.') {
            Some((table, column)) if !table.is_empty() && !column.is_empty() => {
                Ok((TableReference::parse_str(table), column.to_string()))
            }
            _ => fail!(
                UnknownParameter,
                "the parameter must be written table.column, found '{wrt}'"
            ),
        }
    }

    /// The table, resolved.
    pub fn table(&self) -> &ResolvedTableReference {
        &self.table
    }

    /// The column differentiated by.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// What the table is read through.
    pub fn source(&self) -> &Arc<dyn TableSource> {
        &self.source
    }

    /// Whether `scan` reads the parameter's table.
    pub(crate) fn is_scanned_by(&self, scan: &TableScan) -> bool {
        self.is_table(&scan.table_name)
    }

    /// Whether `table` names the parameter's table.
    pub(crate) fn is_table(&self, table: &TableReference) -> bool {
        table
            .clone()
            .resolve(&self.default_catalog, &self.default_schema)
            == self.table
    }

    /// The parameter's column among the scan's output columns.
    pub(crate) fn column_of(&self, scan: &TableScan) -> Option<usize> {
        scan.projected_schema
            .index_of_column(&Column::new(Some(scan.table_name.clone()), &self.column))
            .ok()
    }

    /// Every row and column of the table.
    pub(crate) fn scan(&self) -> Result<LogicalPlan> {
        let name = TableReference::from(self.table.clone());
        LogicalPlanBuilder::scan(name, Arc::clone(&self.source), None)?.build()
    }
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parameter({}.{})", self.table, self.column)
    }
}

impl std::fmt::Display for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.table.table, self.column)
    }
}
