//! The client: a session that plans here and runs its queries on a cluster.

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

/// A session whose queries run on the Ballista scheduler at `url`
/// (`df://host:port`), with datafusion-autograd registered: `grad`, `jvp`,
/// `vjp`, `gradient` and the `autograd.*` options.
///
/// `config` is the session's configuration, usually
/// `SessionConfig::new_with_ballista()` and any settings. Registration comes
/// after `remote_with_state`, because Ballista's upgrade of the session state
/// replaces its scalar functions with DataFusion's built-ins, dropping any
/// registered before. The markers never leave this session: the optimizer
/// replaces them by their derivatives before the plan is sent.
pub async fn connect(url: &str, config: SessionConfig) -> Result<SessionContext> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build();
    let ctx = SessionContext::remote_with_state(url, state).await?;
    datafusion_autograd::register(&ctx);
    Ok(ctx)
}

/// A session like [`connect`]'s that submits physical plans
/// ([`crate::submit`]): in-memory tables (`register_batch`, `MemTable`) and
/// the project's `gradient()` reach the cluster, their rows sent with the
/// plan. `url` is `df://host:port`; `config` as for [`connect`] (its query
/// planner is replaced).
pub async fn connect_submitting_plans(url: &str, config: SessionConfig) -> Result<SessionContext> {
    let scheduler = url.strip_prefix("df://").ok_or_else(|| {
        datafusion::error::DataFusionError::Configuration(format!(
            "a Ballista scheduler's address is df://host:port, not {url:?}"
        ))
    })?;
    let planner = crate::submit::SubmittingPlanner::new(format!("http://{scheduler}"));
    connect(url, config.with_ballista_query_planner(Arc::new(planner))).await
}
