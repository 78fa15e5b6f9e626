//! The table column a gradient is taken with respect to.

use datafusion::catalog::TableProvider;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion_common::{
    plan_datafusion_err, plan_err, Column, ResolvedTableReference, Result, TableReference,
};
use datafusion_expr::{LogicalPlan, LogicalPlanBuilder, TableScan, TableSource};
use std::sync::Arc;

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
            return plan_err!(
                "gradient(): the table {table} has no column `{column}`; its columns are {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if !field.data_type().is_numeric() {
            return plan_err!(
                "gradient(): {table}.{column} must be numeric to differentiate by, found {}",
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

    /// `"table.column"` among the tables of `state`.
    pub fn from_session(state: &SessionState, wrt: &str) -> Result<Self> {
        let Some((table, column)) = wrt.rsplit_once('.') else {
            return plan_err!(
                "gradient(): the parameter must be written table.column, found '{wrt}'"
            );
        };
        let table = TableReference::parse_str(table);
        let options = state.config_options();
        let catalog = &options.catalog.default_catalog;
        let schema = &options.catalog.default_schema;
        let provider = table_provider(state, &table)?;
        Self::new(table, column, provider_as_source(provider), catalog, schema)
    }

    /// The table, resolved.
    pub fn table(&self) -> &ResolvedTableReference {
        &self.table
    }

    /// The column differentiated by.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Whether `scan` reads the parameter's table.
    pub(crate) fn is_scanned_by(&self, scan: &TableScan) -> bool {
        scan.table_name
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

/// The provider of `table` in `state`'s catalogs, found without waiting: a
/// table function is planned synchronously.
pub(crate) fn table_provider(
    state: &SessionState,
    table: &TableReference,
) -> Result<Arc<dyn TableProvider>> {
    use futures::FutureExt;
    let schema = state.schema_for_ref(table.clone())?;
    match schema.table(table.table()).now_or_never() {
        Some(Ok(Some(provider))) => Ok(provider),
        Some(Ok(None)) => Err(plan_datafusion_err!(
            "gradient(): table '{table}' not found"
        )),
        Some(Err(e)) => Err(e),
        None => plan_err!(
            "gradient(): the table '{table}' is not available without waiting on its catalog; \
             register it in memory (for example as a view or table of the session)"
        ),
    }
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parameter({}.{})", self.table, self.column)
    }
}
