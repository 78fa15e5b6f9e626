//! The engines derivative SQL can be written for, and how each one spells
//! what DataFusion writes differently.
//!
//! A derivative is a DataFusion expression. Printing it for another engine
//! starts from DataFusion's own unparser dialect for that engine (identifier
//! quoting, type names, PostgreSQL's NUMERIC `round`), and [`DIFFERENCES`]
//! adds what those leave out: one row per function or operator that an
//! engine names, types or lacks differently. A function neither listed there
//! nor in [`COMMON`] has no known spelling, and asking for it is an error
//! that names it, never SQL that fails or means something else in the engine.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::{internal_err, plan_datafusion_err, plan_err, DataFusionError, Result};
use datafusion_expr::{
    cast, lit, when, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion_functions::core::expr_fn::coalesce;
use datafusion_functions::math::expr_fn::{abs, ln, power, tan};
use datafusion_sql::sqlparser::ast;
use datafusion_sql::sqlparser::keywords::ALL_KEYWORDS;
use datafusion_sql::unparser::dialect::{self as unparser, CharacterLengthStyle};
use datafusion_sql::unparser::Unparser;

/// An engine that derivative SQL is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// Apache DataFusion, the engine the derivative is formed in.
    #[default]
    DataFusion,
    /// DuckDB.
    DuckDb,
    /// PostgreSQL (12 or later, for the hyperbolic functions and `log10`).
    PostgreSql,
    /// SQLite built with its math functions (`SQLITE_ENABLE_MATH_FUNCTIONS`,
    /// the default of its amalgamation build since 3.35).
    Sqlite,
}

impl Dialect {
    pub const ALL: [Dialect; 4] = [
        Dialect::DataFusion,
        Dialect::DuckDb,
        Dialect::PostgreSql,
        Dialect::Sqlite,
    ];

    /// The dialect's name, as [`FromStr`] reads it: `datafusion`, `duckdb`,
    /// `postgresql` or `sqlite`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::DataFusion => "datafusion",
            Dialect::DuckDb => "duckdb",
            Dialect::PostgreSql => "postgresql",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// DataFusion's unparser dialect for the engine, which this module extends.
    pub(crate) fn unparser(self) -> Box<dyn unparser::Dialect> {
        match self {
            Dialect::DataFusion => Box::new(DataFusionDialect),
            Dialect::DuckDb => Box::new(DuckDbDividing(unparser::DuckDBDialect::new())),
            Dialect::PostgreSql => Box::new(unparser::PostgreSqlDialect {}),
            Dialect::Sqlite => Box::new(unparser::SqliteDialect {}),
        }
    }

    /// How the engine writes a float that is not finite.
    pub(crate) fn non_finite(self) -> NonFinite {
        match self {
            Dialect::DataFusion | Dialect::DuckDb => NonFinite::Cast { infinity: "inf" },
            Dialect::PostgreSql => NonFinite::Cast {
                infinity: "Infinity",
            },
            Dialect::Sqlite => NonFinite::Overflow,
        }
    }

    /// Whether a cast (or `TRY_CAST`) from a float to an integer type rounds
    /// in the engine, where DataFusion truncates.
    pub(crate) fn rounds_float_to_integer_casts(self) -> bool {
        matches!(self, Dialect::DuckDb | Dialect::PostgreSql)
    }

    /// Whether the engine has `TRY_CAST`.
    pub(crate) fn has_try_cast(self) -> bool {
        matches!(self, Dialect::DataFusion | Dialect::DuckDb)
    }

    /// How the engine spells `name` called with `arity` arguments, or an
    /// error naming the function if it has no spelling; `%` stands for the
    /// remainder of non-integer operands, `/` for the quotient of integers.
    pub(crate) fn spelling(self, name: &str, arity: usize) -> Result<Spelling> {
        if self == Dialect::DataFusion {
            return Ok(Spelling::Same);
        }
        let difference = DIFFERENCES.iter().find(|(dialect, function, args, _)| {
            *dialect == self && *function == name && args.admit(arity)
        });
        match difference {
            Some((_, _, Args::Exactly(n), Spelling::Missing)) => {
                Err(self.no_spelling(format_args!("'{name}' with {n} arguments")))
            }
            Some((_, _, _, Spelling::Missing)) => Err(self.no_spelling(format_args!("'{name}'"))),
            Some((_, _, _, spelling)) => Ok(*spelling),
            None if COMMON.contains(&name) => Ok(Spelling::Same),
            None => Err(self.no_spelling(format_args!("'{name}'"))),
        }
    }

    /// The error for a construct the engine has no spelling for.
    pub(crate) fn no_spelling(self, what: impl fmt::Display) -> DataFusionError {
        plan_datafusion_err!("{self} has no spelling for {what}, which the derivative contains")
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dialect {
    type Err = DataFusionError;

    fn from_str(name: &str) -> Result<Self> {
        match Dialect::ALL.into_iter().find(|d| d.name() == name) {
            Some(dialect) => Ok(dialect),
            None => {
                let names: Vec<_> = Dialect::ALL.iter().map(|d| d.name()).collect();
                plan_err!(
                    "unknown SQL dialect '{name}'; expected one of {}",
                    names.join(", ")
                )
            }
        }
    }
}

/// DataFusion's DuckDB dialect, dividing with `/`. The dialect writes every
/// division as DuckDB's `//`, which truncates integer quotients as
/// DataFusion's `/` does, but the unparser's precedence table does not know
/// `//`: `1.0 // (2.0 * x)` prints as `1.0 // 2.0 * x`. Both engines divide
/// DOUBLEs with `/`; the quotient of integers is DuckDB's `divide(a, b)`
/// (see [`DIFFERENCES`]), a function call, which needs no precedence.
struct DuckDbDividing(unparser::DuckDBDialect);

impl unparser::Dialect for DuckDbDividing {
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn character_length_style(&self) -> CharacterLengthStyle {
        self.0.character_length_style()
    }

    fn division_operator(&self) -> ast::BinaryOperator {
        ast::BinaryOperator::Divide
    }

    fn scalar_function_to_sql_overrides(
        &self,
        unparser: &Unparser,
        func_name: &str,
        args: &[Expr],
    ) -> Result<Option<ast::Expr>> {
        self.0
            .scalar_function_to_sql_overrides(unparser, func_name, args)
    }
}

/// How an engine writes a float that is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonFinite {
    /// A cast from text, `CAST('inf' AS DOUBLE)`; `infinity` is the text of ∞.
    Cast { infinity: &'static str },
    /// A literal too large for a double, `9e999`; NaN has no spelling.
    Overflow,
}

/// How an engine spells one DataFusion function.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spelling {
    /// As DataFusion does, with the same meaning.
    Same,
    /// The engine's function of this name, with the same arguments and result.
    Named(&'static str),
    /// The engine's function of this name, with the same arguments; it
    /// returns an integer where DataFusion's returns DOUBLE, so it is cast.
    NamedAsDouble(&'static str),
    /// An expression over the arguments, in functions the engine spells.
    Written(fn(Vec<Expr>) -> Result<Expr>),
    /// The engine has no such function.
    Missing,
}

/// The argument counts a row of [`DIFFERENCES`] is about.
#[derive(Debug, Clone, Copy)]
enum Args {
    Any,
    Exactly(usize),
}

impl Args {
    fn admit(self, arity: usize) -> bool {
        match self {
            Args::Any => true,
            Args::Exactly(n) => n == arity,
        }
    }
}

/// DataFusion functions that DuckDB, PostgreSQL and SQLite spell the same way
/// and compute the same thing with, except where [`DIFFERENCES`] says
/// otherwise: the derivative rules' primitives and the functions the rules
/// write, plus `pi`, and the operators `%` (of non-integers) and `/` (of
/// integers). One-argument `log` is base 10 everywhere; `round` rounds half
/// away from zero everywhere, in PostgreSQL through DataFusion's cast to
/// NUMERIC.
#[rustfmt::skip]
const COMMON: &[&str] = &[
    "abs", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil",
    "coalesce", "cos", "cosh", "cot", "degrees", "exp", "floor", "greatest", "least", "ln",
    "log", "log10", "log2", "nullif", "pi", "pow", "power", "radians", "round", "sin", "sinh",
    "sqrt", "tan", "tanh", "trunc",
    "%", "/",
];

use Dialect::{DuckDb, PostgreSql, Sqlite};

/// Where an engine spells a function unlike DataFusion: one row per function,
/// argument count and engine.
#[rustfmt::skip]
static DIFFERENCES: &[(Dialect, &str, Args, Spelling)] = &[
    // DuckDB
    (DuckDb,     "signum",   Args::Any,        Spelling::NamedAsDouble("sign")), // TINYINT
    (DuckDb,     "nvl",      Args::Any,        Spelling::Named("coalesce")),
    (DuckDb,     "nvl2",     Args::Any,        Spelling::Written(nvl2_as_case)),
    (DuckDb,     "/",        Args::Exactly(2), Spelling::Named("divide")),     // of integers
    // PostgreSQL
    (PostgreSql, "signum",   Args::Any,        Spelling::Named("sign")),
    (PostgreSql, "nvl",      Args::Any,        Spelling::Named("coalesce")),
    (PostgreSql, "nvl2",     Args::Any,        Spelling::Written(nvl2_as_case)),
    (PostgreSql, "log2",     Args::Any,        Spelling::Written(log2_as_ln)),
    (PostgreSql, "log",      Args::Exactly(2), Spelling::Written(log_as_ln)),  // NUMERIC only
    (PostgreSql, "trunc",    Args::Exactly(2), Spelling::Missing),             // NUMERIC only
    (PostgreSql, "%",        Args::Exactly(2), Spelling::Missing),             // integers only
    // SQLite
    (Sqlite,     "signum",   Args::Any,        Spelling::NamedAsDouble("sign")), // INTEGER
    (Sqlite,     "nvl",      Args::Any,        Spelling::Named("coalesce")),
    (Sqlite,     "nvl2",     Args::Any,        Spelling::Written(nvl2_as_case)),
    (Sqlite,     "log",      Args::Exactly(2), Spelling::Written(log_as_ln)),  // NULL for a base ≤ 1
    (Sqlite,     "cbrt",     Args::Any,        Spelling::Written(cbrt_as_power)),
    (Sqlite,     "cot",      Args::Any,        Spelling::Written(cot_as_tan)),
    (Sqlite,     "greatest", Args::Any,        Spelling::Written(greatest_as_max)),
    (Sqlite,     "least",    Args::Any,        Spelling::Written(least_as_min)),
    (Sqlite,     "trunc",    Args::Exactly(2), Spelling::Missing),
    (Sqlite,     "%",        Args::Exactly(2), Spelling::Named("mod")),        // % is on integers
];

/// The `N` arguments of a call of `name`.
fn arguments<const N: usize>(name: &str, args: Vec<Expr>) -> Result<[Expr; N]> {
    let count = args.len();
    <[Expr; N]>::try_from(args).or_else(|_| plan_err!("{name} takes {N} argument(s), got {count}"))
}

/// `nvl2(u, v, w)`: `CASE WHEN u IS NOT NULL THEN v ELSE w END`.
fn nvl2_as_case(args: Vec<Expr>) -> Result<Expr> {
    let [u, v, w] = arguments("nvl2", args)?;
    when(u.is_not_null(), v).otherwise(w)
}

/// `log2(u)`: `ln(u) / ln(2)`.
fn log2_as_ln(args: Vec<Expr>) -> Result<Expr> {
    let [u] = arguments("log2", args)?;
    Ok(ln(u) / ln(lit(2.0)))
}

/// `log(b, u)`: `ln(u) / ln(b)`.
fn log_as_ln(args: Vec<Expr>) -> Result<Expr> {
    let [b, u] = arguments("log", args)?;
    Ok(ln(u) / ln(b))
}

/// `cot(u)`: `1 / tan(u)`.
fn cot_as_tan(args: Vec<Expr>) -> Result<Expr> {
    let [u] = arguments("cot", args)?;
    Ok(lit(1.0) / tan(u))
}

/// `cbrt(u)` in SQLite, whose `power` has no odd roots of negative numbers:
/// `sign(u) · |u|^(1/3)`.
fn cbrt_as_power(args: Vec<Expr>) -> Result<Expr> {
    let [u] = arguments("cbrt", args)?;
    let sign = cast(engine_function("sign", vec![u.clone()]), DataType::Float64);
    Ok(sign * power(abs(u), lit(1.0 / 3.0)))
}

/// `greatest(u₁, …)` in SQLite, whose many-argument `max` is NULL if any
/// argument is, where `greatest` skips NULLs: each argument stands in for a
/// NULL by the first non-NULL one.
fn greatest_as_max(args: Vec<Expr>) -> Result<Expr> {
    extremum("max", args)
}

/// `least(u₁, …)` in SQLite; see [`greatest_as_max`].
fn least_as_min(args: Vec<Expr>) -> Result<Expr> {
    extremum("min", args)
}

/// SQLite's scalar `max`/`min` over `args`, NULLs skipped. With one argument
/// they would be the aggregates, so one argument is its own extremum.
fn extremum(name: &'static str, mut args: Vec<Expr>) -> Result<Expr> {
    match args.len() {
        0 => plan_err!("{name} needs an argument"),
        1 => Ok(args.remove(0)),
        _ => Ok(engine_function(name, nulls_skipped(args))),
    }
}

/// `coalesce(uᵢ, u₁, …, uₙ)` (without a second `uᵢ`) for every `i`: an
/// extremum over these is the extremum over the non-NULL `uᵢ`, and NULL when
/// all are.
fn nulls_skipped(args: Vec<Expr>) -> Vec<Expr> {
    (0..args.len())
        .map(|i| {
            let others = args.iter().enumerate().filter(|(j, _)| *j != i);
            let first_non_null = std::iter::once(args[i].clone())
                .chain(others.map(|(_, u)| u.clone()))
                .collect();
            coalesce(first_non_null)
        })
        .collect()
}

/// A call of the engine's function `name`.
pub(crate) fn engine_function(name: &'static str, args: Vec<Expr>) -> Expr {
    Arc::new(ScalarUDF::new_from_impl(EngineFunction::new(name))).call(args)
}

/// A function of the target engine that DataFusion has under another name or
/// not at all. It exists to be printed: DataFusion never evaluates it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct EngineFunction {
    name: &'static str,
    signature: Signature,
}

impl EngineFunction {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for EngineFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        internal_err!(
            "{}() is another engine's function, written into SQL for it; DataFusion does not \
             evaluate it",
            self.name
        )
    }
}

/// DataFusion's SQL, as DataFusion's own default unparser dialect writes it:
/// identifiers are quoted when they are keywords, hold upper-case letters (the
/// parser would lower-case them) or anything but letters, digits and `_`.
/// The default dialect decides this with a regular expression compiled anew
/// for every identifier; this one reads the characters.
pub(super) struct DataFusionDialect;

impl unparser::Dialect for DataFusionDialect {
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        let mut chars = identifier.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let upper = identifier.to_ascii_uppercase();
        let keyword = upper != "ID" && ALL_KEYWORDS.binary_search(&upper.as_str()).is_ok();
        (keyword || !plain).then_some('"')
    }
}
