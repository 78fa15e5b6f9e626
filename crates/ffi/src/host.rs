//! The host half of loading this library: `dlopen` it, take the markers from
//! its exported tables, and register them on a context.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::{Path, PathBuf};

use datafusion::prelude::SessionContext;
use datafusion_autograd::Derivative;
use datafusion_common::{plan_datafusion_err, Result};
use datafusion_expr::ScalarUDF;
use libloading::{Library, Symbol};

use crate::{symbol, FFI_SimplifyingScalarUDF, SIMPLIFY_CALLS_SYMBOL};

/// The library's file name on this platform.
pub fn library_file_name() -> String {
    format!("{DLL_PREFIX}datafusion_autograd_ffi{DLL_SUFFIX}")
}

/// The library cargo built for the running test or benchmark: it lies next to
/// the executable, or one directory up.
pub fn cargo_built_library() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let name = library_file_name();
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .find(|path| path.exists())
        .ok_or_else(|| plan_datafusion_err!("{name} was not built next to {}", exe.display()))
}

/// The library, loaded into this process.
pub struct AutogradLibrary {
    library: Library,
}

impl AutogradLibrary {
    /// Loads the library at `path`.
    ///
    /// # Safety
    ///
    /// `path` must be this crate's cdylib, built against the same DataFusion
    /// major version: its initialisers run, and its symbols are trusted to
    /// have the signatures this module reads them with.
    pub unsafe fn load(path: &Path) -> Result<Self> {
        // SAFETY: the caller vouches for the library.
        let library = unsafe { Library::new(path) }
            .map_err(|e| plan_datafusion_err!("cannot load {}: {e}", path.display()))?;
        Ok(Self { library })
    }

    /// The FFI table the library exports for `marker`: a fresh, owned copy.
    pub fn table(&self, marker: Derivative) -> Result<FFI_SimplifyingScalarUDF> {
        let name = symbol(marker);
        // SAFETY: the library exports `name` as
        // `extern "C" fn() -> FFI_SimplifyingScalarUDF` (see `load`).
        let export: Symbol<extern "C" fn() -> FFI_SimplifyingScalarUDF> =
            unsafe { self.library.get(name.as_bytes()) }
                .map_err(|e| plan_datafusion_err!("the library has no {name}: {e}"))?;
        Ok(export())
    }

    /// The marker as a host UDF whose `simplify` runs in the library.
    pub fn udf(&self, marker: Derivative) -> Result<ScalarUDF> {
        ScalarUDF::try_from(&self.table(marker)?)
    }

    /// Registers the library's `grad`, `jvp` and `vjp` on `ctx`.
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        for marker in Derivative::ALL {
            ctx.register_udf(self.udf(marker)?);
        }
        Ok(())
    }

    /// How many simplify calls the library has served.
    pub fn simplify_calls(&self) -> Result<u64> {
        // SAFETY: the library exports it as `extern "C" fn() -> u64` (see `load`).
        let export: Symbol<extern "C" fn() -> u64> = unsafe {
            self.library.get(SIMPLIFY_CALLS_SYMBOL.as_bytes())
        }
        .map_err(|e| plan_datafusion_err!("the library has no {SIMPLIFY_CALLS_SYMBOL}: {e}"))?;
        Ok(export())
    }
}
