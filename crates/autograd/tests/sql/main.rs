//! End-to-end tests: every derivative is planned and executed by a real
//! `SessionContext` and checked against an independent reference (analytic
//! derivatives written in Rust, and central finite differences of the primal
//! evaluated by DataFusion itself).

mod common;

mod dataframe;
mod dialects;
mod documentation;
mod errors;
mod fuzz;
mod hvp;
mod kept_plans;
mod plan_shapes;
mod random_losses;
mod random_trees;
mod relational;
mod rules;
mod special_values;
mod sql_text;
mod whole_query;
