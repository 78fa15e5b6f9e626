//! Registering the functions this crate adds on a session.

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use crate::options::AutogradOptions;
use datafusion_optimizer::AnalyzerRule;

use crate::forward::udf::{stop_gradient_udf, udfs};
use crate::table::{GradientFunction, WholeQueryMarkers};

/// Registers `grad`, `jvp`, `vjp` and `stop_gradient`, the table function
/// `gradient`, the analyzer rule for markers over whole queries
/// ([`WholeQueryMarkers`]), and the options `autograd.*` ([`AutogradOptions`])
/// on `ctx`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use datafusion::prelude::SessionContext;
///
/// let ctx = SessionContext::new();
/// datafusion_autograd::register(&ctx);
/// let df = ctx.sql("SELECT grad(x * x * x, x) AS d FROM (VALUES (2.0)) AS t(x)").await.unwrap();
/// let batches = df.collect().await.unwrap();
/// # });
/// ```
pub fn register(ctx: &SessionContext) {
    crate::stack::ensure_recursion_room();
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    if options.extensions.get::<AutogradOptions>().is_none() {
        options.extensions.insert(AutogradOptions::default());
    }
    drop(state);
    for udf in udfs().into_iter().chain([stop_gradient_udf()]) {
        ctx.register_udf(udf.as_ref().clone());
    }
    ctx.register_udtf("gradient", Arc::new(GradientFunction));
    let analyzed = ctx
        .state()
        .analyzer()
        .rules
        .iter()
        .any(|r| r.name() == WholeQueryMarkers.name());
    if !analyzed {
        ctx.add_analyzer_rule(Arc::new(WholeQueryMarkers));
    }
}
