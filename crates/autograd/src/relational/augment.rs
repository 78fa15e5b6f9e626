//! The reverse pass's two kinds of relation: augmented plans (forward) and
//! contributions (backward), and the plan-building they share.

use std::sync::Arc;

use datafusion_common::{Column, NullEquality, Result};
use datafusion_expr::expr_rewriter::{
    normalize_col, normalize_col_with_schemas_and_ambiguity_check,
};
use datafusion_expr::logical_plan::Join;
use datafusion_expr::{Expr, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder};

/// A node's rows for the reverse pass.
///
/// Every column of an augmented plan has a name of its own, unqualified and
/// used nowhere else in the gradient's plan, so plans combine (join, union)
/// without clashes and a column is found by its name alone.
#[derive(Clone, Debug)]
pub(crate) struct Augmented {
    pub plan: LogicalPlan,
    /// Where the node's output columns are, in the order of its schema.
    pub out: Vec<Column>,
    /// How the inputs' rows are found again.
    pub layout: Layout,
}

#[derive(Clone, Debug)]
pub(crate) enum Layout {
    /// Nothing below needs cotangents.
    Constant,
    /// A parameter's table; `columns` hold each of the table's columns.
    Parameter { columns: Vec<Column> },
    /// Each output row comes from one row of each input listed (by its
    /// position among the node's inputs), and every column of their
    /// augmented plans is present under its own name. `matched[k]`, where
    /// present, is a column that is NULL in the rows input k has no row in
    /// (the other side's unmatched rows of an outer join).
    Rows {
        inputs: Vec<(usize, Augmented)>,
        matched: Vec<Option<Column>>,
    },
    /// Each output row stands for a group of rows of `input` (kept as a
    /// stage), which the reverse rule reads again.
    Groups { input: Box<Augmented> },
    /// Each output row comes from one input, named by `tag`; `columns[k]` are
    /// the columns here that hold input k's augmented plan's columns.
    Branches {
        tag: Column,
        inputs: Vec<(Augmented, Vec<Column>)>,
    },
}

impl Layout {
    /// Each output row is a row of the one input.
    pub fn same_rows(input: Augmented) -> Self {
        Layout::Rows {
            inputs: vec![(0, input)],
            matched: vec![None],
        }
    }
}

impl Augmented {
    /// The augmented plan of a node whose rows are `input`'s rows, unchanged.
    pub fn same_rows_as(input: Augmented) -> Self {
        Augmented {
            plan: input.plan.clone(),
            out: input.out.clone(),
            layout: Layout::same_rows(input),
        }
    }
}

/// Contributions to the cotangents of a node's rows.
///
/// Every row of `plan` is a row of `aug.plan` (with all its columns) and, in
/// the columns `cot`, a contribution to the cotangent of the node's output
/// columns; a row's cotangent is the sum of its contributions. A NULL
/// contribution is no contribution: a row reaches the loss through some of
/// its columns and not others, and nothing reached is zero, never unknown.
#[derive(Clone, Debug)]
pub(crate) struct Bar {
    pub plan: LogicalPlan,
    pub aug: Augmented,
    /// Per output column of the node: the column holding its contribution.
    pub cot: Vec<Option<Column>>,
}

impl Bar {
    /// Whether any output column has contributions.
    pub fn reaches(&self) -> bool {
        self.cot.iter().any(Option::is_some)
    }
}

/// The name of a parameter table's `k`-th column in a contribution.
pub(crate) fn contribution_column(k: usize) -> String {
    format!("__ag_param{k}")
}

/// The contribution's column in a contribution.
pub(crate) const CONTRIBUTION: &str = "__ag_contribution";

/// `plan` under a projection of all its columns, when it is an aggregate or a
/// window: the shape in which DataFusion's unparser writes them as SQL.
pub(crate) fn selected(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => {
            let columns = with_columns(&plan, []);
            LogicalPlanBuilder::from(plan).project(columns)?.build()
        }
        other => Ok(other),
    }
}

/// `left` joined with `right` on `on`, each key qualified as its side names
/// it (the planner matches expression keys by their qualified names).
pub(crate) fn join(
    left: LogicalPlan,
    right: LogicalPlan,
    on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
    join_type: JoinType,
    null_equality: NullEquality,
) -> Result<LogicalPlan> {
    let on = on
        .into_iter()
        .map(|(l, r)| Ok((normalize_col(l, &left)?, normalize_col(r, &right)?)))
        .collect::<Result<Vec<_>>>()?;
    let filter = filter
        .map(|f| {
            normalize_col_with_schemas_and_ambiguity_check(
                f,
                &[&[left.schema(), right.schema()]],
                &[],
            )
        })
        .transpose()?;
    Ok(LogicalPlan::Join(Join::try_new(
        Arc::new(left),
        Arc::new(right),
        on,
        filter,
        join_type,
        JoinConstraint::On,
        null_equality,
        false,
    )?))
}

/// `plan` with its columns renamed to `names`, in order.
pub(crate) fn rename(plan: LogicalPlan, names: &[Column]) -> Result<LogicalPlan> {
    let exprs: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .zip(names)
        .map(|(c, n)| Expr::Column(c).alias(n.name.clone()))
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// Every column of `plan`, by name, followed by `extra`. Names alone find
/// them wherever they are read, since augmented plans name every column
/// uniquely (and stages qualify them with their own names).
pub(crate) fn with_columns(plan: &LogicalPlan, extra: impl IntoIterator<Item = Expr>) -> Vec<Expr> {
    plan.schema()
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::from_name(f.name().clone())))
        .chain(extra)
        .collect()
}

/// `plan` with `extra` columns added.
pub(crate) fn extend(plan: LogicalPlan, extra: Vec<Expr>) -> Result<LogicalPlan> {
    let exprs = with_columns(&plan, extra);
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}
