//! A gradient's physical plans, kept from one statement to the next.
//!
//! A training loop asks for the same gradient at every step, over tables of
//! the same schemas and sizes whose rows change; for a small batch, planning
//! the stages and results costs more than running them. So the plans one
//! statement makes are kept as templates — every operator fresh, every
//! table's scan a leaf that remembers what it asked of the table, no rows —
//! and a later statement runs a copy, each scan asked again of the table
//! that statement reads.
//!
//! A copy is made only of the same pass's plans, for the session options they
//! were planned under, and only when every table scans to a leaf of the same
//! schema, partitioning, ordering and number of rows as before, and a size
//! within a factor of four (the plans were chosen for those); otherwise the
//! statement plans anew and keeps its plans instead. Only one copy of a
//! template is alive at a time: some operators share state with their copies
//! (a scalar subquery's results), so a statement asking while a copy is alive
//! plans its own. Nothing kept holds a table's rows.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion_common::{internal_err, Result, Statistics, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::{Expr, LogicalPlanBuilder, TableProviderFilterPushDown, TableType};

use super::stages::{bind, plan_stages, Slots, StageExec, StageSlot};
use crate::relational::Staged;

/// The plans of one gradient's pass kept for the next statement that asks
/// for it, and how often they were planned and copied.
#[derive(Debug, Default)]
pub struct PlanMemo {
    kept: Mutex<Option<Arc<Kept>>>,
    planned: AtomicUsize,
    copied: AtomicUsize,
}

impl PlanMemo {
    /// How many statements planned the pass's stages.
    pub fn planned(&self) -> usize {
        self.planned.load(Ordering::Relaxed)
    }

    /// How many statements ran a copy of the kept plans instead.
    pub fn copied(&self) -> usize {
        self.copied.load(Ordering::Relaxed)
    }

    /// The kept plans, for a statement of the pass `staged` planned under
    /// `options`, when no copy of them is alive.
    fn lease(&self, staged: &Staged, options: &Options) -> Option<Arc<Lease>> {
        let kept = self.kept.lock().expect("never poisoned").clone()?;
        let free = kept
            .in_use
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !free {
            return None;
        }
        let lease = Arc::new(Lease(kept));
        let fits = lease.0.options == *options && same_pass(&lease.0.pass, staged);
        fits.then_some(lease)
    }

    /// Keeps `kept` in place of any plans before, leased to the statement
    /// that planned them.
    fn keep(&self, kept: Kept) -> Arc<Lease> {
        kept.in_use.store(true, Ordering::Release);
        let kept = Arc::new(kept);
        *self.kept.lock().expect("never poisoned") = Some(Arc::clone(&kept));
        Arc::new(Lease(kept))
    }
}

/// What the plans depend on besides the tables: the session's options.
type Options = Vec<(String, Option<String>)>;

fn options(state: &SessionState) -> Options {
    state
        .config_options()
        .entries()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

/// A result and the columns read of it.
type ResultKey = (usize, Option<Vec<usize>>);

/// Whether two passes have the same plans, whatever tables their scans read
/// (DataFusion's equality of plans leaves a scan's source out).
fn same_pass(a: &Staged, b: &Staged) -> bool {
    a.results == b.results
        && a.stages.len() == b.stages.len()
        && a.stages
            .iter()
            .zip(&b.stages)
            .all(|(a, b)| a.name == b.name && a.plan == b.plan)
}

/// `staged` with every table's scan reading its schema alone: what is kept
/// of a pass must not keep the rows of the tables it read.
fn without_tables(staged: &Staged) -> Result<Staged> {
    staged.with_scans(&|scan| {
        let schema = scan.source.schema();
        Ok(Some(Arc::new(LogicalTableSource::new(schema)) as _))
    })
}

/// Templates of a pass's plans.
struct Kept {
    /// The pass they were planned for, without its tables: a memo given
    /// another pass plans it.
    pass: Staged,
    options: Options,
    /// Each stage's template, in the order the stages are computed.
    stages: Vec<(String, Arc<dyn ExecutionPlan>)>,
    /// The stages the templates read: never computed.
    blank: Slots,
    /// Each result's template, by result and projection.
    results: Mutex<HashMap<ResultKey, Arc<dyn ExecutionPlan>>>,
    in_use: AtomicBool,
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kept({} stages)", self.stages.len())
    }
}

/// A statement's use of the kept plans: held by the statement's plans, by
/// every stream of its results and every computation of its stages, given
/// back when the last of them is dropped.
pub(crate) struct Lease(Arc<Kept>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.in_use.store(false, Ordering::Release);
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lease({:?})", self.0)
    }
}

/// One statement's stages, planned or copied, and how its results are.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The plans the results are planned from.
    staged: Arc<Staged>,
    pub(crate) slots: Slots,
    /// The statement's tables by name, when the plans are kept.
    tables: HashMap<TableReference, Arc<dyn TableProvider>>,
    pub(crate) lease: Option<Arc<Lease>>,
    /// The results this statement has copied or kept a template of: a
    /// result read twice in one statement (a self-join) is planned again,
    /// since two copies of one template running at once would share state.
    used: Mutex<HashSet<ResultKey>>,
}

impl Planned {
    /// The stages of `staged`, planned in `state`; with a memo, copied from
    /// the plans it keeps where they fit, and kept for the next statement
    /// where they were planned.
    pub(crate) async fn new(
        state: &SessionState,
        staged: &Arc<Staged>,
        memo: Option<&PlanMemo>,
    ) -> Result<Self> {
        let (Some(memo), Some(tables)) = (memo, tables(staged)?) else {
            return Ok(Self {
                staged: Arc::clone(staged),
                slots: plan_stages(state, staged).await?,
                tables: HashMap::new(),
                lease: None,
                used: Mutex::default(),
            });
        };
        let options = options(state);
        let scanned = scanning(staged)?;
        if let Some(lease) = memo.lease(staged, &options) {
            let templates: Vec<_> = lease.0.stages.iter().map(|(_, t)| t).collect();
            if let Some(scans) = rescan(state, &templates, &tables).await? {
                let mut slots = Slots::new();
                for (name, template) in &lease.0.stages {
                    let plan = copy(template, &scans, &slots)?;
                    let slot = StageSlot::new(name.clone(), plan);
                    slot.hold(Arc::clone(&lease) as _);
                    slots.insert(name.clone(), Arc::new(slot));
                }
                memo.copied.fetch_add(1, Ordering::Relaxed);
                return Ok(Self {
                    staged: scanned,
                    slots,
                    tables,
                    lease: Some(lease),
                    used: Mutex::default(),
                });
            }
        }
        memo.planned.fetch_add(1, Ordering::Relaxed);
        let slots = plan_stages(state, &scanned).await?;
        let keepable = scanned
            .stages
            .iter()
            .all(|s| slots.get(&s.name).is_some_and(|slot| keepable(slot.plan())));
        if !keepable {
            *memo.kept.lock().expect("never poisoned") = None;
            return Ok(Self {
                staged: scanned,
                slots,
                tables,
                lease: None,
                used: Mutex::default(),
            });
        }
        let mut stages = vec![];
        let mut blank = Slots::new();
        for stage in &scanned.stages {
            let template = template(slots[&stage.name].plan(), &blank)?;
            let slot = StageSlot::new(stage.name.clone(), Arc::clone(&template));
            blank.insert(stage.name.clone(), Arc::new(slot));
            stages.push((stage.name.clone(), template));
        }
        let lease = memo.keep(Kept {
            pass: without_tables(staged)?,
            options,
            stages,
            blank,
            results: Mutex::default(),
            in_use: AtomicBool::new(false),
        });
        for slot in slots.values() {
            slot.hold(Arc::clone(&lease) as _);
        }
        Ok(Self {
            staged: scanned,
            slots,
            tables,
            lease: Some(lease),
            used: Mutex::default(),
        })
    }

    /// The physical plan of result `k`, its columns `projection`, reading
    /// the statement's stages: copied from its template when there is one
    /// that fits, planned (and kept) otherwise.
    pub(crate) async fn result(
        &self,
        state: &SessionState,
        k: usize,
        projection: Option<&Vec<usize>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let key = (k, projection.cloned());
        let first = self
            .used
            .lock()
            .expect("never poisoned")
            .insert(key.clone());
        let lease = self.lease.as_ref().filter(|_| first);
        if let Some(lease) = lease {
            let template = lease
                .0
                .results
                .lock()
                .expect("never poisoned")
                .get(&key)
                .cloned();
            if let Some(template) = template {
                if let Some(scans) = rescan(state, &[&template], &self.tables).await? {
                    return copy(&template, &scans, &self.slots);
                }
            }
        }
        let mut result = LogicalPlanBuilder::from(bind(&self.staged.results[k], &self.slots)?);
        if let Some(columns) = projection {
            result = result.select(columns.iter().copied())?;
        }
        let plan = state.create_physical_plan(&result.build()?).await?;
        if let Some(lease) = lease {
            if keepable(&plan) {
                let template = template(&plan, &lease.0.blank)?;
                lease
                    .0
                    .results
                    .lock()
                    .expect("never poisoned")
                    .insert(key, template);
            }
        }
        Ok(plan)
    }
}

/// The provider of every table `staged` reads, by name; None when one is
/// not a provider's, or one name reads two tables.
fn tables(staged: &Staged) -> Result<Option<HashMap<TableReference, Arc<dyn TableProvider>>>> {
    let mut tables: HashMap<TableReference, Arc<dyn TableProvider>> = HashMap::new();
    for (name, source) in staged.table_sources()? {
        let Ok(provider) = source_as_provider(&source) else {
            return Ok(None);
        };
        match tables.get(&name) {
            Some(known) if !Arc::ptr_eq(known, &provider) => return Ok(None),
            _ => {
                tables.insert(name, provider);
            }
        }
    }
    Ok(Some(tables))
}

/// `staged` with every table read through [`Scanning`], so that its plans'
/// scans are leaves a copy can ask again.
fn scanning(staged: &Staged) -> Result<Arc<Staged>> {
    let staged = staged.with_scans(&|scan| {
        let provider = source_as_provider(&scan.source)?;
        Ok(Some(provider_as_source(Arc::new(Scanning {
            table: scan.table_name.clone(),
            provider,
        }))))
    })?;
    Ok(Arc::new(staged))
}

/// Whether a plan can be kept and copied: DataFusion's recursive queries
/// cannot be run twice (their working table is shared by every copy).
fn keepable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !plan
        .exists(|node| {
            Ok(matches!(
                node.name(),
                "RecursiveQueryExec" | "WorkTableExec"
            ))
        })
        .unwrap_or(true)
}

/// `plan` as a template: every operator anew, every table scan without its
/// leaf, every stage read from `blank`.
fn template(plan: &Arc<dyn ExecutionPlan>, blank: &Slots) -> Result<Arc<dyn ExecutionPlan>> {
    Arc::clone(plan)
        .transform_up(|node| {
            if let Some(scan) = node.downcast_ref::<ScanLeaf>() {
                return Ok(Transformed::yes(Arc::new(scan.without_leaf()) as _));
            }
            if let Some(stage) = node.downcast_ref::<StageExec>() {
                return Ok(Transformed::yes(Arc::new(stage.reading(blank)?) as _));
            }
            Ok(Transformed::yes(node.reset_state()?))
        })
        .data()
}

/// A copy of `template` to run: every operator anew, every table scan the
/// leaf in `scans`, every stage read from `slots`.
fn copy(
    template: &Arc<dyn ExecutionPlan>,
    scans: &HashMap<ScanKey, Arc<dyn ExecutionPlan>>,
    slots: &Slots,
) -> Result<Arc<dyn ExecutionPlan>> {
    Arc::clone(template)
        .transform_up(|node| {
            if let Some(scan) = node.downcast_ref::<ScanLeaf>() {
                let Some(leaf) = scans.get(&scan.key) else {
                    return internal_err!("the scan of {} was not asked again", scan.key.table);
                };
                return Ok(Transformed::yes(Arc::new(scan.with_leaf(leaf)) as _));
            }
            if let Some(stage) = node.downcast_ref::<StageExec>() {
                return Ok(Transformed::yes(Arc::new(stage.reading(slots)?) as _));
            }
            Ok(Transformed::yes(node.reset_state()?))
        })
        .data()
}

/// Every table scan of `templates` asked again of `tables`: None when a
/// table is gone or scans to a leaf of another shape than before.
async fn rescan(
    state: &SessionState,
    templates: &[&Arc<dyn ExecutionPlan>],
    tables: &HashMap<TableReference, Arc<dyn TableProvider>>,
) -> Result<Option<HashMap<ScanKey, Arc<dyn ExecutionPlan>>>> {
    let mut asked: Vec<ScanLeaf> = vec![];
    for template in templates {
        template.apply(|node| {
            if let Some(scan) = node.downcast_ref::<ScanLeaf>() {
                if !asked.iter().any(|a| a.key == scan.key) {
                    asked.push(scan.without_leaf());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    let mut scans = HashMap::new();
    for scan in asked {
        let Some(table) = tables.get(&scan.key.table) else {
            return Ok(None);
        };
        let key = &scan.key;
        let leaf = table
            .scan(state, key.projection.as_ref(), &key.filters, key.limit)
            .await?;
        if !scan.fits(&leaf)? {
            return Ok(None);
        }
        scans.insert(scan.key, leaf);
    }
    Ok(Some(scans))
}

/// What a scan asked of a table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ScanKey {
    table: TableReference,
    projection: Option<Vec<usize>>,
    filters: Vec<Expr>,
    limit: Option<usize>,
}

/// A table whose scans are [`ScanLeaf`]s.
#[derive(Debug)]
struct Scanning {
    table: TableReference,
    provider: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for Scanning {
    fn schema(&self) -> SchemaRef {
        self.provider.schema()
    }

    fn table_type(&self) -> TableType {
        self.provider.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.provider.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let leaf = self
            .provider
            .scan(session, projection, filters, limit)
            .await?;
        let key = ScanKey {
            table: self.table.clone(),
            projection: projection.cloned(),
            filters: filters.to_vec(),
            limit,
        };
        Ok(Arc::new(ScanLeaf::new(key, leaf)?))
    }
}

/// A table's scan as one operator without children, so that a copy can put
/// the same table's scan in another statement in its place. The template
/// keeps no leaf, only the shape the plan was made for.
#[derive(Debug)]
struct ScanLeaf {
    key: ScanKey,
    leaf: Option<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
    statistics: Arc<Statistics>,
}

impl ScanLeaf {
    fn new(key: ScanKey, leaf: Arc<dyn ExecutionPlan>) -> Result<Self> {
        Ok(Self {
            key,
            properties: Arc::clone(leaf.properties()),
            statistics: leaf.partition_statistics(None)?,
            leaf: Some(leaf),
        })
    }

    fn without_leaf(&self) -> Self {
        Self {
            key: self.key.clone(),
            leaf: None,
            properties: Arc::clone(&self.properties),
            statistics: Arc::clone(&self.statistics),
        }
    }

    fn with_leaf(&self, leaf: &Arc<dyn ExecutionPlan>) -> Self {
        Self {
            leaf: Some(Arc::clone(leaf)),
            ..self.without_leaf()
        }
    }

    /// Whether `leaf` has the shape this scan's plan was made for: the same
    /// schema, partitioning and ordering, the same number of rows, and a
    /// size within a factor of four (a table a statement writes anew holds
    /// the same rows in buffers of more or less spare room each time: twice
    /// as much from one step of a training loop to the next). DataFusion
    /// chooses join orders and build sides by these.
    fn fits(&self, leaf: &Arc<dyn ExecutionPlan>) -> Result<bool> {
        let (was, is) = (&self.properties, leaf.properties());
        let statistics = leaf.partition_statistics(None)?;
        let bytes = |s: &Statistics| s.total_byte_size.get_value().copied();
        let similar_size = match (bytes(&self.statistics), bytes(&statistics)) {
            (Some(a), Some(b)) => a.max(b) <= 4 * a.min(b),
            (a, b) => a == b,
        };
        Ok(leaf.schema() == *was.eq_properties.schema()
            && same_partitioning(&was.partitioning, &is.partitioning)
            && was.output_ordering() == is.output_ordering()
            && was.emission_type == is.emission_type
            && was.boundedness == is.boundedness
            && statistics.num_rows == self.statistics.num_rows
            && similar_size)
    }
}

/// Whether two partitionings are the same: DataFusion's equality holds no
/// unknown partitioning equal to another, whatever its count.
fn same_partitioning(a: &Partitioning, b: &Partitioning) -> bool {
    match (a, b) {
        (Partitioning::UnknownPartitioning(m), Partitioning::UnknownPartitioning(n)) => m == n,
        _ => a == b,
    }
}

impl DisplayAs for ScanLeaf {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.leaf {
            Some(leaf) => leaf.fmt_as(format, f),
            None => write!(f, "ScanLeaf: table={}", self.key.table),
        }
    }
}

impl ExecutionPlan for ScanLeaf {
    fn name(&self) -> &str {
        self.leaf.as_ref().map_or("ScanLeaf", |l| l.name())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("a table's scan has no children")
        }
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        match (&self.leaf, partition) {
            (_, None) => Ok(Arc::clone(&self.statistics)),
            (Some(leaf), partition) => leaf.partition_statistics(partition),
            (None, Some(_)) => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        match &self.leaf {
            Some(leaf) => leaf.execute(partition, context),
            None => internal_err!(
                "a kept plan's scan of {} runs only in a copy",
                self.key.table
            ),
        }
    }
}
