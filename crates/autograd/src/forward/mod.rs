//! The forward engine: derivatives of scalar expressions, one row at a time.
//!
//! Each module uses only those listed before it:
//!
//! | module | job |
//! | --- | --- |
//! | `condition` | which expressions are truth values (derivative zero) |
//! | `tangent` | tangents and the algebra that keeps them small |
//! | `rules` | the table of calculus: one JVP rule per primitive |
//! | `reals` | reading expressions over the reals |
//! | `linearize` | forward mode over an expression |
//! | `marker` | what a marker means: `Derivative`, `expand_markers`, `differentiate`, `linearize` |
//! | `udf` | the markers and `stop_gradient` as scalar UDFs |

pub(crate) mod condition;
pub(crate) mod linearize;
pub(crate) mod marker;
pub(crate) mod reals;
pub(crate) mod rules;
pub(crate) mod tangent;
pub(crate) mod udf;
