//! Markers over a whole query: `grad((SELECT l FROM loss), w)`, where the
//! subquery is a loss and `w` a column of a table the statement reads, is
//! ∂loss/∂(that row's value of `w`) at every row.
//!
//! A marker's `simplify` sees expressions only, and cannot tell which table
//! a column comes from; this analyzer rule, which [`crate::register`] adds,
//! sees the plan. Before the optimizer simplifies any marker, it wraps every
//! scalar subquery inside a marker's expression:
//!
//! - a subquery that reads the table of the marker's column becomes
//!   `__autograd_with_derivative(subquery, d, column)`, where `d` is a column
//!   of the gradient of that loss with respect to the table, joined to the
//!   marker's input row by row; the forward engine's rule for it passes `d`
//!   on, so the marker composes as calculus does (`grad(w * (SELECT SUM(w * w)
//!   FROM w), w)` is `Σw² + 2w²`);
//! - any other subquery is constant with respect to the column:
//!   `stop_gradient(subquery)`.
//!
//! Every marker of one statement over the same loss shares one reverse pass,
//! for all the parameters it is taken with respect to anywhere in the
//! statement: the rule first asks every node which gradients it needs, then
//! forms one pass per loss, then joins each node to its share.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::provider_as_source;
use datafusion_common::config::ConfigOptions;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, NullEquality, Result, TableReference};
use datafusion_expr::expr::ScalarFunction;
use datafusion_expr::expr_rewriter::NamePreserver;
use datafusion_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Subquery, TableScan};
use datafusion_optimizer::AnalyzerRule;

use super::GradientTable;
use crate::error::fail;
use crate::forward::marker::Derivative;
use crate::forward::rules::WITH_DERIVATIVE;
use crate::forward::udf::{stop_gradient_udf, with_derivative};
use crate::options::AutogradOptions;
use crate::relational::{gradients, join, reads_a_parameter, Parameter, GRADIENT_COLUMN};

/// The analyzer rule for markers over whole queries.
#[derive(Debug, Default)]
pub struct WholeQueryMarkers;

impl AnalyzerRule for WholeQueryMarkers {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut passes = Passes::default();
        plan.apply_with_subqueries(|node| {
            rewrite(node.clone(), config, &mut passes)?;
            Ok(TreeNodeRecursion::Continue)
        })?;
        passes.form(config)?;
        plan.transform_up_with_subqueries(|node| rewrite(node, config, &mut passes))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "autograd_whole_query_markers"
    }
}

/// Whether `expr` is a marker call.
fn marker(expr: &Expr) -> Option<(Derivative, &ScalarFunction)> {
    match expr {
        Expr::ScalarFunction(f) => Derivative::from_name(f.func.name()).map(|d| (d, f)),
        _ => None,
    }
}

/// Whether `expr` holds a scalar subquery that is not wrapped yet.
fn has_bare_subquery(expr: &Expr) -> Result<bool> {
    let mut found = false;
    expr.apply(|e| match e {
        Expr::ScalarFunction(f) if wraps(f) => Ok(TreeNodeRecursion::Jump),
        Expr::ScalarSubquery(_) => {
            found = true;
            Ok(TreeNodeRecursion::Stop)
        }
        _ => Ok(TreeNodeRecursion::Continue),
    })?;
    Ok(found)
}

/// Whether `f` is one of the wrappers this rule writes.
fn wraps(f: &ScalarFunction) -> bool {
    f.func.name() == WITH_DERIVATIVE || f.func.name() == "stop_gradient"
}

/// The reverse passes of one statement: first the gradients its nodes ask
/// for, then one pass per loss for all of them.
#[derive(Default)]
struct Passes {
    asked: Vec<(Arc<LogicalPlan>, Parameter)>,
    /// `None` while the nodes are being asked.
    formed: Option<Vec<Formed>>,
}

/// One loss's reverse pass: its gradient by each parameter, in order.
struct Formed {
    loss: Arc<LogicalPlan>,
    parameters: Vec<Parameter>,
    tables: Vec<GradientTable>,
}

impl Passes {
    fn ask(&mut self, loss: &Arc<LogicalPlan>, parameter: &Parameter) {
        let known = self
            .asked
            .iter()
            .any(|(l, p)| l == loss && same_parameter(p, parameter));
        if !known {
            self.asked.push((Arc::clone(loss), parameter.clone()));
        }
    }

    /// One pass per loss asked for, for every parameter asked with it.
    fn form(&mut self, config: &ConfigOptions) -> Result<()> {
        let options = AutogradOptions::from_config(config);
        let mut formed: Vec<Formed> = vec![];
        for (loss, parameter) in self.asked.drain(..) {
            match formed.iter_mut().find(|f| f.loss == loss) {
                Some(pass) => pass.parameters.push(parameter),
                None => formed.push(Formed {
                    loss,
                    parameters: vec![parameter],
                    tables: vec![],
                }),
            }
        }
        for pass in &mut formed {
            let staged = gradients(&pass.loss, &pass.parameters, &options)?;
            pass.tables = GradientTable::sharing(Arc::new(staged));
        }
        self.formed = Some(formed);
        Ok(())
    }

    /// The gradient of `loss` by `parameter` from the statement's pass, if
    /// one was formed for them.
    fn table(&self, loss: &LogicalPlan, parameter: &Parameter) -> Option<GradientTable> {
        let pass = self
            .formed
            .as_ref()?
            .iter()
            .find(|f| f.loss.as_ref() == loss)?;
        let k = pass
            .parameters
            .iter()
            .position(|p| same_parameter(p, parameter))?;
        Some(pass.tables[k].clone())
    }
}

fn same_parameter(a: &Parameter, b: &Parameter) -> bool {
    a.table() == b.table() && a.column() == b.column()
}

/// `node` with its markers over subqueries wrapped and joined to their
/// gradients; while `passes` is still asking, `node` as it is, the gradients
/// it needs noted.
fn rewrite(
    node: LogicalPlan,
    config: &ConfigOptions,
    passes: &mut Passes,
) -> Result<Transformed<LogicalPlan>> {
    let mut wanted = false;
    node.apply_expressions(|e| {
        wanted |= e.exists(|x| {
            Ok(match marker(x) {
                Some((derivative, f)) => {
                    refuse_second_order(derivative, f)?;
                    has_bare_subquery(&f.args[0])?
                }
                None => false,
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    })?;
    if !wanted {
        return Ok(Transformed::no(node));
    }
    let inputs = node.inputs();
    let [input] = inputs.as_slice() else {
        return fail!(
            UnsupportedOperation,
            "a marker over a subquery stands in `{}`, which has several inputs; write it in a \
             projection, an aggregate, a filter, a window or an ORDER BY",
            node.display()
        );
    };
    let input = (*input).clone();
    let mut joins = Joins::new(config);
    let names = NamePreserver::new(&node);
    let rewritten = node.clone().map_expressions(|e| {
        let saved = names.save(&e);
        let e = e.transform_up(|x| {
            let Some((_, f)) = marker(&x) else {
                return Ok(Transformed::no(x));
            };
            if !has_bare_subquery(&f.args[0])? {
                return Ok(Transformed::no(x));
            }
            let mut args = f.args.clone();
            args[0] = wrap(args[0].clone(), &args[1], &input, &mut joins)?;
            Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                func: Arc::clone(&f.func),
                args,
            })))
        })?;
        Ok(e.update_data(|e| saved.restore(e)))
    })?;
    if joins.requests.is_empty() && joins.values.is_empty() {
        return Ok(rewritten);
    }
    if passes.formed.is_none() {
        for (loss, parameter, ..) in &joins.requests {
            passes.ask(loss, parameter);
        }
        return Ok(Transformed::no(node));
    }
    // A join keeps no order: rows the node reads sorted are sorted again.
    let order = match &input {
        LogicalPlan::Sort(sort) => Some(sort.expr.clone()),
        _ => None,
    };
    let mut joined = joins.join(input, passes)?;
    if let Some(order) = order {
        joined = LogicalPlanBuilder::from(joined).sort(order)?.build()?;
    }
    let exprs = rewritten.data.expressions();
    let rebuilt = node.with_new_exprs(exprs, vec![joined])?;
    // The joined columns go again where the node passes its input's on.
    if rebuilt.schema().fields().len() == node.schema().fields().len() {
        return Ok(Transformed::yes(rebuilt));
    }
    let columns: Vec<Expr> = node
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    Ok(Transformed::yes(
        LogicalPlanBuilder::from(rebuilt)
            .project(columns)?
            .build()?,
    ))
}

/// An error for a marker over a marker over a subquery: the second
/// derivative of a whole query.
fn refuse_second_order(derivative: Derivative, f: &ScalarFunction) -> Result<()> {
    let nested = f.args[0].exists(|e| {
        Ok(match marker(e) {
            Some((_, inner)) => inner.args[0].exists(|x| {
                Ok(matches!(x, Expr::ScalarSubquery(_))
                    || matches!(x, Expr::ScalarFunction(g) if g.func.name() == WITH_DERIVATIVE))
            })?,
            None => false,
        })
    })?;
    if nested {
        return fail!(
            UnsupportedOperation,
            "{} over a marker over a subquery asks for the second derivative of a whole query, \
             which markers do not form; Hessian-vector products of a whole query: \
             datafusion_autograd::relational::hvp, or ag.hvp from Python",
            derivative.usage()
        );
    }
    Ok(())
}

/// `expr` with each bare scalar subquery wrapped: with its derivative by the
/// column `wrt` where it reads `wrt`'s table, else as a constant.
fn wrap(expr: Expr, wrt: &Expr, input: &LogicalPlan, joins: &mut Joins) -> Result<Expr> {
    let table = match wrt {
        Expr::Column(c) => {
            defining_table(input, c).map(|(scan, qualifier)| (scan, qualifier, c.name.clone()))
        }
        _ => None,
    };
    expr.transform_down(|e| match &e {
        Expr::ScalarFunction(f) if wraps(f) => {
            Ok(Transformed::new(e, false, TreeNodeRecursion::Jump))
        }
        Expr::ScalarSubquery(subquery) if !subquery.outer_ref_columns.is_empty() => {
            refuse_correlated(
                subquery,
                wrt,
                table.as_ref().map(|(scan, _, c)| (scan, c)),
                joins,
            )?;
            let wrapped = stop_gradient_udf().call(vec![e.clone()]);
            Ok(Transformed::new(wrapped, true, TreeNodeRecursion::Jump))
        }
        Expr::ScalarSubquery(subquery) => {
            let reads = match &table {
                Some((scan, _, column)) => {
                    let parameter = joins.parameter(scan, column)?;
                    reads_a_parameter(&subquery.subquery, std::slice::from_ref(&parameter))?
                        .then_some(parameter)
                }
                None => None,
            };
            let wrapped = match (reads, &table) {
                (Some(parameter), Some((scan, qualifier, _))) => {
                    let d =
                        joins.derivative(&subquery.subquery, parameter, scan, qualifier, input)?;
                    let value = joins.value(&subquery.subquery)?;
                    with_derivative(Expr::Column(value), Expr::Column(d), wrt.clone())
                }
                _ => stop_gradient_udf().call(vec![e.clone()]),
            };
            Ok(Transformed::new(wrapped, true, TreeNodeRecursion::Jump))
        }
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// An error for a correlated subquery whose value moves with the column
/// `wrt`: one that refers to it, or reads its table; any other correlated
/// subquery is a constant of the derivative.
fn refuse_correlated(
    subquery: &Subquery,
    wrt: &Expr,
    table: Option<(&TableScan, &String)>,
    joins: &Joins,
) -> Result<()> {
    let refers = match wrt {
        Expr::Column(c) => subquery.outer_ref_columns.iter().any(|e| {
            matches!(e, Expr::OuterReferenceColumn(_, o)
                if o.name == c.name && (o.relation.is_none() || c.relation.is_none() || o.relation == c.relation))
        }),
        _ => false,
    };
    if refers {
        return fail!(
            UnsupportedOperation,
            "cannot differentiate through a scalar subquery that refers to the column being \
             differentiated ({wrt}); move the derivative inside the subquery"
        );
    }
    if let Some((scan, column)) = table {
        let parameter = joins.parameter(scan, column)?;
        if reads_a_parameter(&subquery.subquery, std::slice::from_ref(&parameter))? {
            return fail!(
                UnsupportedOperation,
                "the correlated scalar subquery `{}` reads table `{}` of the column being \
                 differentiated; the gradient of a whole query is formed for uncorrelated \
                 subqueries: compute the per-row values in a join or a CTE first",
                Expr::ScalarSubquery(subquery.clone()),
                scan.table_name
            );
        }
    }
    Ok(())
}

/// The base table scan whose rows carry the column `column` of `plan`'s
/// output, and the name they carry it under: a table the query reads
/// directly, under its name or an alias.
fn defining_table(plan: &LogicalPlan, column: &Column) -> Option<(TableScan, TableReference)> {
    let qualifier = match &column.relation {
        Some(q) => q.clone(),
        None => plan
            .schema()
            .qualified_field_with_unqualified_name(&column.name)
            .ok()?
            .0?
            .clone(),
    };
    defining(plan, &qualifier).map(|scan| (scan, qualifier))
}

fn defining(plan: &LogicalPlan, qualifier: &TableReference) -> Option<TableScan> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.table_name == *qualifier => Some(scan.clone()),
        LogicalPlan::SubqueryAlias(a) if a.alias == *qualifier => base_scan(&a.input),
        other => other
            .inputs()
            .into_iter()
            .find_map(|input| defining(input, qualifier)),
    }
}

/// The scan under aliases and projections of its plain columns.
fn base_scan(plan: &LogicalPlan) -> Option<TableScan> {
    match plan {
        LogicalPlan::TableScan(scan) => Some(scan.clone()),
        LogicalPlan::SubqueryAlias(a) => base_scan(&a.input),
        LogicalPlan::Projection(p)
            if p.expr
                .iter()
                .zip(p.schema.fields())
                .all(|(e, f)| matches!(e, Expr::Column(c) if c.name == *f.name())) =>
        {
            base_scan(&p.input)
        }
        _ => None,
    }
}

/// The gradients one node's markers need, and the joins that bring them to
/// its input's rows.
struct Joins<'a> {
    config: &'a ConfigOptions,
    /// `(loss, parameter, the columns identifying the parameter's table's
    /// row in the input, the derivative's column)`.
    requests: Vec<(Arc<LogicalPlan>, Parameter, Vec<Column>, Column)>,
    /// The losses' values, joined as one row each rather than read as
    /// scalar subqueries (DataFusion 54 drops an `ORDER BY` over a plan with
    /// a scalar subquery, apache/datafusion#23677).
    values: Vec<(Arc<LogicalPlan>, Column)>,
}

impl<'a> Joins<'a> {
    fn new(config: &'a ConfigOptions) -> Self {
        Self {
            config,
            requests: vec![],
            values: vec![],
        }
    }

    /// The column, on every input row once joined, of the one value `loss` returns.
    fn value(&mut self, loss: &Arc<LogicalPlan>) -> Result<Column> {
        if let Some((_, column)) = self.values.iter().find(|(l, _)| l == loss) {
            return Ok(column.clone());
        }
        let column = Column::from_name(format!("__autograd_loss{}", self.values.len()));
        self.values.push((Arc::clone(loss), column.clone()));
        Ok(column)
    }

    fn parameter(&self, scan: &TableScan, column: &str) -> Result<Parameter> {
        let catalog = &self.config.catalog;
        Parameter::new(
            scan.table_name.clone(),
            column,
            Arc::clone(&scan.source),
            &catalog.default_catalog,
            &catalog.default_schema,
        )
    }

    /// The column of `input`'s rows (once joined) holding ∂loss/∂(the row's
    /// value of `parameter`), for the table `scan` read under `qualifier`.
    fn derivative(
        &mut self,
        loss: &Arc<LogicalPlan>,
        parameter: Parameter,
        scan: &TableScan,
        qualifier: &TableReference,
        input: &LogicalPlan,
    ) -> Result<Column> {
        let identity: Vec<Column> = scan
            .source
            .schema()
            .fields()
            .iter()
            .map(|f| Column::new(Some(qualifier.clone()), f.name()))
            .collect();
        if let Some(missing) = identity.iter().find(|c| !input.schema().has_column(c)) {
            return fail!(
                UnknownParameter,
                "grad over a subquery by {qualifier}.{} needs every column of {qualifier} where \
                 it stands, to tell which row of {} each row is; {missing} is not there",
                parameter.column(),
                scan.table_name
            );
        }
        let same = |(l, p, i, _): &&(Arc<LogicalPlan>, Parameter, Vec<Column>, Column)| {
            l == loss
                && p.table() == parameter.table()
                && p.column() == parameter.column()
                && *i == identity
        };
        if let Some((.., d)) = self.requests.iter().find(same) {
            return Ok(d.clone());
        }
        let d = Column::from_name(format!("__autograd_d{}", self.requests.len()));
        self.requests
            .push((Arc::clone(loss), parameter, identity, d.clone()));
        Ok(d)
    }

    /// `input` joined, row by row, to the gradients asked for: from the
    /// statement's passes, or (a loss that changed since it was asked for,
    /// rewritten inside) one pass per loss here, for all its parameters.
    fn join(self, input: LogicalPlan, passes: &Passes) -> Result<LogicalPlan> {
        let options = AutogradOptions::from_config(self.config);
        let mut tables: Vec<Option<GradientTable>> = self
            .requests
            .iter()
            .map(|(loss, parameter, ..)| passes.table(loss, parameter))
            .collect();
        let mut by_loss: HashMap<&LogicalPlan, Vec<usize>> = HashMap::new();
        for (k, (loss, ..)) in self.requests.iter().enumerate() {
            if tables[k].is_none() {
                by_loss.entry(loss.as_ref()).or_default().push(k);
            }
        }
        for (loss, asked) in by_loss {
            let parameters: Vec<Parameter> =
                asked.iter().map(|&k| self.requests[k].1.clone()).collect();
            let staged = gradients(loss, &parameters, &options)?;
            for (table, &k) in GradientTable::sharing(Arc::new(staged))
                .into_iter()
                .zip(&asked)
            {
                tables[k] = Some(table);
            }
        }
        let mut joined = input;
        for (loss, column) in &self.values {
            let value = Expr::Column(loss.schema().columns()[0].clone()).alias(column.name.clone());
            let one_row = LogicalPlanBuilder::from(loss.as_ref().clone())
                .project([value])?
                .alias(format!("{}_value", column.name))?
                .build()?;
            joined = LogicalPlanBuilder::from(joined)
                .cross_join(one_row)?
                .build()?;
        }
        for ((_, _, identity, d), table) in self.requests.iter().zip(tables) {
            let table = table.expect("every request has its table");
            let name = format!("{}_gradient", d.name);
            let columns = TableProvider::schema(&table);
            let keys: Vec<Column> = (0..identity.len())
                .map(|k| Column::from_name(format!("{}_{k}", d.name)))
                .collect();
            let mut exprs: Vec<Expr> = columns.fields()[..identity.len()]
                .iter()
                .zip(&keys)
                .map(|(f, k)| Expr::Column(Column::from_name(f.name())).alias(k.name.clone()))
                .collect();
            exprs.push(Expr::Column(Column::from_name(GRADIENT_COLUMN)).alias(d.name.clone()));
            // One row per distinct row of the table: identical rows share one gradient.
            let gradient =
                LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(table)), None)?
                    .project(exprs)?
                    .distinct()?
                    .build()?;
            let on: Vec<(Expr, Expr)> = identity
                .iter()
                .cloned()
                .map(Expr::Column)
                .zip(keys.into_iter().map(Expr::Column))
                .collect();
            joined = join(
                joined,
                gradient,
                on,
                None,
                JoinType::Left,
                NullEquality::NullEqualsNull,
            )?;
        }
        Ok(joined)
    }
}
