//! The build side of the join that takes a reduction's cotangents back to
//! the rows it reduced.
//!
//! The reverse rule of a `GROUP BY` sums the contributions per group and
//! joins the sums back onto the group's input rows. The groups are never
//! more rows than the input, and the input is usually the larger by far —
//! a join of tables, computed again for this reader — so the hash table is
//! built on the groups. DataFusion's join selection decides from statistics
//! alone, and a join of tables whose keys carry no column statistics is
//! estimated at a few rows: it would collect the input, the loss's whole
//! data, into the hash table. This rule, run right after join selection,
//! puts the groups on the build side.

use std::sync::Arc;

use datafusion::config::ConfigOptions;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion_common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion_common::Result;

/// What the engine names the key columns of a reduction's groups.
const GROUP_KEY: &str = "__ag_key";

/// `state` with [`BuildOnGroups`] after its join selection: the session the
/// engine's plans are planned in. Plans to be kept and copied are planned
/// without dynamic filters: a join's filter pushed into a scan would be
/// shared by the copies.
pub(crate) fn engine_state(state: &SessionState, kept: bool) -> SessionState {
    let mut rules = Vec::with_capacity(state.physical_optimizers().len() + 1);
    for rule in state.physical_optimizers() {
        rules.push(Arc::clone(rule));
        if rule.name() == "join_selection" {
            rules.push(Arc::new(BuildOnGroups) as _);
        }
    }
    let mut engine =
        SessionStateBuilder::new_from_existing(state.clone()).with_physical_optimizer_rules(rules);
    if kept {
        // The catalogs are the state's: a config that asked for a default
        // catalog would have the builder put an empty one in its place.
        let mut config = state
            .config()
            .clone()
            .with_create_default_catalog_and_schema(false);
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.enable_dynamic_filter_pushdown = false;
        optimizer.enable_join_dynamic_filter_pushdown = false;
        optimizer.enable_topk_dynamic_filter_pushdown = false;
        optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        engine = engine.with_config(config);
    }
    engine.build()
}

/// Swaps a hash join whose probe side is joined on group keys alone, and
/// whose build side on none, so that it builds on the groups: collected
/// whole when they are under the session's limits for that, partitioned by
/// the keys otherwise.
#[derive(Debug, Default)]
pub(crate) struct BuildOnGroups;

impl PhysicalOptimizerRule for BuildOnGroups {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let groups_probe = join
                .on()
                .iter()
                .all(|(build, probe)| !is_group_key(build) && is_group_key(probe));
            if !groups_probe || !join.join_type().supports_swap() || join.null_aware {
                return Ok(Transformed::no(node));
            }
            let mode = if collectable(join.right().as_ref(), config)? {
                PartitionMode::CollectLeft
            } else {
                PartitionMode::Partitioned
            };
            Ok(Transformed::yes(join.swap_inputs(mode)?))
        })
        .data()
    }

    fn name(&self) -> &str {
        "build_on_groups"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn is_group_key(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<Column>()
        .is_some_and(|c| c.name().starts_with(GROUP_KEY))
}

/// Whether `plan` is small enough, by its statistics, for one hash table
/// that every partition probes: DataFusion's own limits for that.
fn collectable(plan: &dyn ExecutionPlan, config: &ConfigOptions) -> Result<bool> {
    let stats = plan.partition_statistics(None)?;
    let limits = &config.optimizer;
    Ok(
        match (
            stats.total_byte_size.get_value(),
            stats.num_rows.get_value(),
        ) {
            (Some(bytes), _) => *bytes < limits.hash_join_single_partition_threshold,
            (None, Some(rows)) => *rows < limits.hash_join_single_partition_threshold_rows,
            (None, None) => false,
        },
    )
}
