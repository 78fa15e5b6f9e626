//! A gradient's plan in stages.
//!
//! The reverse pass reads some relations more than once: the input of every
//! reduction (by the reduction, and again by its reverse rule) and the
//! contributions that reach both sides of a join. A plan is a tree, so as one
//! plan those relations would be computed once per reading, and the readings
//! multiply with every reduction and join on the way to the parameter. The
//! gradient is therefore a sequence of stages, each computed once and read by
//! name by the stages after it and by the result.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::physical_plan::{collect_partitioned, ExecutionPlan};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::Result;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableScan, TableType};

use crate::sql::plan_to_sql;

/// The gradient as stages and a result, each a plan that may scan the
/// stages before it by name.
#[derive(Clone, Debug)]
pub struct Staged {
    /// `(name, plan)`, in the order they must be computed.
    pub stages: Vec<(String, LogicalPlan)>,
    /// The gradient: every row of the parameter's table and `grad`.
    pub result: LogicalPlan,
}

/// The gradient as SQL: statements that create the stages as tables, the
/// query that reads them, and the tables to drop afterwards.
#[derive(Clone, Debug)]
pub struct StagedSql {
    pub stages: Vec<String>,
    pub query: String,
    pub tables: Vec<String>,
}

impl Staged {
    /// The output schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.result.schema().as_arrow().clone())
    }

    /// The stages as `CREATE TABLE` statements and the result as a query.
    pub fn to_sql(&self) -> Result<StagedSql> {
        let stages = self
            .stages
            .iter()
            .map(|(name, plan)| Ok(format!("CREATE TABLE {name} AS {}", plan_to_sql(plan)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(StagedSql {
            stages,
            query: plan_to_sql(&self.result)?,
            tables: self.stages.iter().map(|(name, _)| name.clone()).collect(),
        })
    }

    /// Computes the stages in `session`, and returns the result's plan over
    /// their rows.
    pub async fn run(&self, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        let mut tables: HashMap<String, Arc<MemTable>> = HashMap::new();
        for (name, plan) in &self.stages {
            let plan = bind(plan, &tables)?;
            let schema = Arc::new(plan.schema().as_arrow().clone());
            let executed = session.create_physical_plan(&plan).await?;
            let partitions = collect_partitioned(executed, session.task_ctx()).await?;
            tables.insert(
                name.clone(),
                Arc::new(MemTable::try_new(schema, partitions)?),
            );
        }
        session
            .create_physical_plan(&bind(&self.result, &tables)?)
            .await
    }
}

/// `plan` with its scans of stages reading the stages' rows.
fn bind(plan: &LogicalPlan, tables: &HashMap<String, Arc<MemTable>>) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up(|node| match &node {
            LogicalPlan::TableScan(scan) => match tables.get(scan.table_name.table()) {
                Some(table) => {
                    let source = provider_as_source(Arc::clone(table) as Arc<dyn TableProvider>);
                    Ok(Transformed::yes(LogicalPlan::TableScan(
                        TableScan::try_new(
                            scan.table_name.clone(),
                            source,
                            scan.projection.clone(),
                            scan.filters.clone(),
                            scan.fetch,
                        )?,
                    )))
                }
                None => Ok(Transformed::no(node)),
            },
            _ => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
}

/// The table a gradient is: its stages are computed each time it is scanned.
#[derive(Debug)]
pub struct GradientTable {
    staged: Staged,
    schema: SchemaRef,
}

impl GradientTable {
    pub fn new(staged: Staged) -> Self {
        let schema = staged.schema();
        Self { staged, schema }
    }
}

#[async_trait]
impl TableProvider for GradientTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let staged = match projection {
            Some(columns) => {
                let result = LogicalPlanBuilder::from(self.staged.result.clone())
                    .select(columns.iter().copied())?
                    .build()?;
                Staged {
                    stages: self.staged.stages.clone(),
                    result,
                }
            }
            None => self.staged.clone(),
        };
        staged.run(session).await
    }
}
