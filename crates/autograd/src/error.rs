//! The errors a caller may want to tell apart without reading their text.
//!
//! Every error of this crate is a [`DataFusionError`], so that it travels
//! through DataFusion's planner like any other. Four kinds of them carry an
//! [`ErrorKind`] inside (as [`DataFusionError::External`]); [`error_kind`]
//! finds it again, through whatever context DataFusion wrapped around it.
//!
//! ```
//! use datafusion_autograd::{error_kind, ErrorKind};
//!
//! let e = datafusion_autograd::differentiate_sql("nanvl(x, 1.0)", "x", datafusion_autograd::Dialect::DataFusion)
//!     .unwrap_err();
//! assert_eq!(error_kind(&e), Some(ErrorKind::UnsupportedOperation));
//! assert!(e.to_string().contains("no derivative rule for 'nanvl'"));
//! ```

use std::fmt;

use datafusion_common::DataFusionError;

/// What went wrong, for a caller that reacts to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An operator or function with no derivative rule on the way from the
    /// variable to the result; the message names it and shows where it is.
    UnsupportedOperation,
    /// The loss of a whole-query gradient does not return one row with one
    /// numeric column, or computes different rows each time it runs.
    NotALoss,
    /// The parameter or variable differentiated by does not exist, is not
    /// numeric, or is not written as the call expects.
    UnknownParameter,
    /// A size, depth or nesting limit was reached; the message names the
    /// limit, the number found, and how to raise it.
    LimitExceeded,
}

impl ErrorKind {
    /// The kind's name, as the Python exception classes spell it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::UnsupportedOperation => "UnsupportedOperation",
            ErrorKind::NotALoss => "NotALoss",
            ErrorKind::UnknownParameter => "UnknownParameter",
            ErrorKind::LimitExceeded => "LimitExceeded",
        }
    }
}

/// An error of a known kind.
#[derive(Debug)]
pub struct AutogradError {
    kind: ErrorKind,
    message: String,
}

impl AutogradError {
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for AutogradError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AutogradError {}

/// A [`DataFusionError`] of `kind` saying `message`.
pub(crate) fn error(kind: ErrorKind, message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(AutogradError {
        kind,
        message: message.into(),
    }))
}

/// `Err` of [`error`], with the message formatted in place.
macro_rules! fail {
    ($kind:ident, $($message:tt)*) => {
        Err($crate::error::error($crate::error::ErrorKind::$kind, format!($($message)*)))
    };
}
pub(crate) use fail;

/// The error of a known kind inside `e`, if any: DataFusion wraps the errors
/// of a planning step in context, sometimes several times.
pub fn autograd_error(e: &DataFusionError) -> Option<&AutogradError> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<AutogradError>().or_else(|| {
            inner
                .downcast_ref::<DataFusionError>()
                .and_then(autograd_error)
        }),
        DataFusionError::Context(_, inner) => autograd_error(inner),
        DataFusionError::Shared(inner) => autograd_error(inner),
        DataFusionError::Diagnostic(_, inner) => autograd_error(inner),
        DataFusionError::Collection(errors) => errors.iter().find_map(autograd_error),
        _ => None,
    }
}

/// The kind of `e`, if it is (or wraps) an error of a known kind.
pub fn error_kind(e: &DataFusionError) -> Option<ErrorKind> {
    autograd_error(e).map(AutogradError::kind)
}
