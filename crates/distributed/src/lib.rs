//! datafusion-autograd on an [Apache DataFusion Ballista] cluster.
//!
//! The markers need no server-side support: a Ballista client plans in its
//! own `SessionContext`, and `SessionState::create_physical_plan` optimizes
//! the logical plan — SimplifyExpressions replaces every `grad`, `jvp` and
//! `vjp` by its derivative — before it hands the plan to Ballista's query
//! planner, which sends it to the scheduler. The scheduler and the executors
//! only ever see DataFusion's built-in functions, so stock Ballista servers
//! run the queries. What the client needs is [`client::connect`]: the markers
//! registered after Ballista's state upgrade, which replaces the function list.
//!
//! The other modules serve the example and the tests, and show the setup on
//! one machine:
//!
//! | module | job |
//! | --- | --- |
//! | [`cluster`] | a scheduler and executors inside this process, on ports the OS picks, stopped when dropped |
//! | [`data`] | a synthetic data set as several Parquet files in a temporary directory |
//! | [`fit`] | a gradient-descent step of y = a·exp(b·x) as one query |
//! | [`process`] | a scheduler or an executor as a process of its own, stopped by the end of its input |
//! | [`submit`] | physical-plan submission, which carries in-memory tables and `gradient()`'s stages |
//!
//! [Apache DataFusion Ballista]: https://datafusion.apache.org/ballista/

pub mod client;
pub mod cluster;
pub mod data;
pub mod fit;
pub mod process;
pub mod submit;
