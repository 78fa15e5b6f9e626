//! The engine's options, set per session like DataFusion's own.

use datafusion_common::config::{ConfigExtension, ConfigOptions};
use datafusion_common::{extensions_options, Result};
use datafusion_expr::Expr;

use crate::error::fail;
use crate::stack::depth;

extensions_options! {
    /// datafusion-autograd's options: `SET autograd.<name> = …` in a session
    /// where [`crate::register`] ran, or in a `SessionConfig`.
    pub struct AutogradOptions {
        /// The most expression nodes one derivative may have. A derivative can
        /// grow much faster than its expression (the tenth derivative of
        /// tan(exp(x)), a long product); past this size, forming it stops with
        /// an error that names both numbers.
        pub max_derivative_nodes: usize, default = 100_000
        /// The deepest nesting of an expression the engine reads. Deeper
        /// expressions are refused before anything recursive touches them.
        pub max_expression_depth: usize, default = 10_000
    }
}

impl ConfigExtension for AutogradOptions {
    const PREFIX: &'static str = "autograd";
}

impl AutogradOptions {
    /// The options `config` holds, or the defaults.
    pub fn from_config(config: &ConfigOptions) -> Self {
        config.extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// The defaults, with a different size limit.
    pub fn with_max_derivative_nodes(max_derivative_nodes: usize) -> Self {
        Self {
            max_derivative_nodes,
            ..Self::default()
        }
    }

    /// An error unless `expr` nests no deeper than `max_expression_depth`;
    /// measured without recursion. Returns the depth.
    pub fn check_depth(&self, expr: &Expr) -> Result<usize> {
        let depth = depth(expr);
        if depth > self.max_expression_depth {
            return fail!(
                LimitExceeded,
                "the expression nests {depth} levels deep, past the limit of {} \
                 (autograd.max_expression_depth)",
                self.max_expression_depth
            );
        }
        Ok(depth)
    }
}
