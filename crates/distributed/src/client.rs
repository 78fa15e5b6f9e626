//! The client: a session that plans here and runs its queries on a cluster.

use ballista::prelude::SessionContextExt;
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
