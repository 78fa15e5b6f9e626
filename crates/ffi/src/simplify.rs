//! `ScalarUDF::simplify` across an FFI boundary.
//!
//! datafusion-ffi's [`FFI_ScalarUDF`] carries no simplify slot, so a host
//! holding a foreign UDF never calls the library's `simplify`. This module is
//! both halves of that missing slot, in datafusion-ffi's style:
//!
//! - [`FFI_ScalarUDFSimplify`], the producer: a `#[repr(C)]` table of
//!   `extern "C"` functions over a UDF that lives in this library;
//! - [`ForeignSimplifyingUDF`], the consumer: a [`ScalarUDFImpl`] for the host
//!   that forwards everything to datafusion-ffi's foreign UDF and implements
//!   `simplify` by calling across;
//! - [`FFI_SimplifyingScalarUDF`], the pair a library hands to a host.
//!
//! The table also carries what `information_schema` shows of a UDF and
//! `FFI_ScalarUDF` leaves out: its [`Documentation`] ([`FFI_Documentation`])
//! and the argument types its signature lists.
//!
//! Arguments and results cross as datafusion-proto bytes; see the crate's
//! README for the protocol.

use std::ffi::c_void;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion_common::arrow::ffi::FFI_ArrowSchema;
use datafusion_common::{ffi_datafusion_err, plan_err, DataFusionError, Result};
use datafusion_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion_expr::{
    ColumnarValue, DocSection, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature,
};
use datafusion_ffi::arrow_wrappers::WrappedSchema;
use datafusion_ffi::ffi_option::FFI_Option;
use datafusion_ffi::udf::FFI_ScalarUDF;
use stabby::string::String as SString;
use stabby::vec::Vec as SVec;

use crate::codec::{exprs_from_bytes, exprs_to_bytes, schema_from_bytes, schema_to_bytes};
use crate::panics::catch_panic;

/// Version of the simplify protocol; a consumer refuses any other.
pub const SIMPLIFY_PROTOCOL_VERSION: u64 = 2;

/// The outcome of one simplify call.
#[repr(C, u8)]
#[derive(Debug)]
pub enum FFI_SimplifyResult {
    /// The call was rewritten: one expression as a `LogicalExprList` message.
    Simplified(SVec<u8>),
    /// The call stays as it is.
    Original,
    /// Simplification failed; the message says why.
    Error(SString),
}

/// DataFusion's [`Documentation`] of a UDF, field for field, as it crosses
/// the boundary.
#[repr(C)]
#[derive(Debug, Clone)]
pub struct FFI_Documentation {
    pub section_include: bool,
    pub section_label: SString,
    pub section_description: FFI_Option<SString>,
    pub description: SString,
    pub syntax_example: SString,
    pub sql_example: FFI_Option<SString>,
    /// The arguments as pairs in argument order: name, description, name, …
    pub arguments: FFI_Option<SVec<SString>>,
    pub alternative_syntax: FFI_Option<SVec<SString>>,
    pub related_udfs: FFI_Option<SVec<SString>>,
}

fn strings(items: &[String]) -> SVec<SString> {
    items.iter().map(|s| SString::from(s.as_str())).collect()
}

fn owned(items: &SVec<SString>) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl From<&Documentation> for FFI_Documentation {
    fn from(doc: &Documentation) -> Self {
        let text = |s: &str| SString::from(s);
        let arguments = doc.arguments.as_ref().map(|arguments| {
            arguments
                .iter()
                .flat_map(|(name, meaning)| [text(name), text(meaning)])
                .collect()
        });
        Self {
            section_include: doc.doc_section.include,
            section_label: text(doc.doc_section.label),
            section_description: doc.doc_section.description.map(text).into(),
            description: text(&doc.description),
            syntax_example: text(&doc.syntax_example),
            sql_example: doc.sql_example.as_deref().map(text).into(),
            arguments: arguments.into(),
            alternative_syntax: doc.alternative_syntax.as_deref().map(strings).into(),
            related_udfs: doc.related_udfs.as_deref().map(strings).into(),
        }
    }
}

impl From<&FFI_Documentation> for Documentation {
    fn from(doc: &FFI_Documentation) -> Self {
        let arguments = doc.arguments.as_ref().map(|flat| {
            owned(flat)
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
                .collect()
        });
        Documentation {
            doc_section: DocSection {
                include: doc.section_include,
                label: interned(&doc.section_label),
                description: doc.section_description.as_ref().map(|d| interned(d)),
            },
            description: doc.description.to_string(),
            syntax_example: doc.syntax_example.to_string(),
            sql_example: doc.sql_example.as_ref().map(|s| s.to_string()),
            arguments,
            alternative_syntax: doc.alternative_syntax.as_ref().map(owned),
            related_udfs: doc.related_udfs.as_ref().map(owned),
        }
    }
}

/// `text` as a `&'static str`, which is all DataFusion's [`DocSection`]
/// holds. Each distinct text is leaked once per process; there are as many as
/// documentation sections in the loaded libraries, so a list is searched (a
/// hash table would point into the middle of its allocation, which leak
/// checkers cannot tell from a lost block).
fn interned(text: &str) -> &'static str {
    static TEXTS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut texts = TEXTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = texts.iter().find(|known| **known == text) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.push(leaked);
    leaked
}

/// The argument lists `signature` spells out: its `Exact` arms.
fn listed_argument_types(signature: &TypeSignature) -> Vec<Vec<DataType>> {
    match signature {
        TypeSignature::Exact(types) => vec![types.clone()],
        TypeSignature::OneOf(arms) => arms.iter().flat_map(listed_argument_types).collect(),
        _ => vec![],
    }
}

/// One argument list as a schema with a field per argument.
fn argument_schema(types: &[DataType]) -> Result<WrappedSchema> {
    let fields: Vec<Field> = types
        .iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("arg_{i}"), t.clone(), true))
        .collect();
    Ok(WrappedSchema(FFI_ArrowSchema::try_from(&Schema::new(
        fields,
    ))?))
}

/// The simplify slot of one UDF, callable from another library.
#[repr(C)]
#[derive(Debug)]
pub struct FFI_ScalarUDFSimplify {
    /// Simplifies one call of the UDF. `args` is a datafusion-proto
    /// `LogicalExprList` of the call's arguments, `schema` a `DfSchema` of the
    /// input they are evaluated against. Functions inside both resolve by
    /// name among DataFusion's built-ins.
    pub simplify:
        unsafe extern "C" fn(udf: &Self, args: SVec<u8>, schema: SVec<u8>) -> FFI_SimplifyResult,

    /// [`SIMPLIFY_PROTOCOL_VERSION`] of the producing library.
    pub protocol_version: unsafe extern "C" fn() -> u64,

    /// The DataFusion major version of the producing library.
    pub datafusion_version: unsafe extern "C" fn() -> u64,

    /// Used to create a clone of the table; the clone owns its own data.
    pub clone: unsafe extern "C" fn(udf: &Self) -> Self,

    /// Releases the private data. Called exactly once, by `Drop`.
    pub release: unsafe extern "C" fn(udf: &mut Self),

    /// Internal data, only ever read by the producing library.
    pub private_data: *mut c_void,

    // Version 2. The slots are appended, so that a version-1 consumer still
    // finds `protocol_version` where it looks, reads 2 and refuses the table.
    /// The UDF's documentation (`ScalarUDFImpl::documentation`), if it has any.
    pub documentation: unsafe extern "C" fn(udf: &Self) -> FFI_Option<FFI_Documentation>,

    /// The argument lists the UDF's signature spells out (its `Exact` arms),
    /// each as a schema with one field per argument: what `information_schema`
    /// lists as the UDF's parameters.
    pub listed_argument_types: unsafe extern "C" fn(udf: &Self) -> SVec<WrappedSchema>,
}

// SAFETY: the private data is an `Arc<ScalarUDF>`, which is Send + Sync, and
// the table's functions take shared references only.
unsafe impl Send for FFI_ScalarUDFSimplify {}
unsafe impl Sync for FFI_ScalarUDFSimplify {}

struct SimplifyPrivateData {
    udf: Arc<ScalarUDF>,
}

/// How many simplify calls this library has served across FFI.
static SIMPLIFY_CALLS: AtomicU64 = AtomicU64::new(0);

/// The number of simplify calls this library has served across FFI.
pub fn simplify_calls() -> u64 {
    SIMPLIFY_CALLS.load(Ordering::Relaxed)
}

impl FFI_ScalarUDFSimplify {
    /// The UDF behind the table, or an error if it was released.
    fn udf(&self) -> Result<&Arc<ScalarUDF>> {
        let private_data = self.private_data as *const SimplifyPrivateData;
        if private_data.is_null() {
            return plan_err!("the simplify table was used after it was released");
        }
        // SAFETY: non-null private data is the box this library created in
        // `From<Arc<ScalarUDF>>` and frees only in `release`.
        Ok(unsafe { &(*private_data).udf })
    }
}

fn simplify_local(
    udf: &FFI_ScalarUDFSimplify,
    args: &[u8],
    schema: &[u8],
) -> Result<Option<Vec<u8>>> {
    let udf = udf.udf()?;
    let args = exprs_from_bytes(args)?;
    let schema = schema_from_bytes(schema)?;
    let info = SimplifyContext::builder()
        .with_schema(Arc::new(schema))
        .build();
    match udf.simplify(args, &info)? {
        ExprSimplifyResult::Simplified(expr) => Ok(Some(exprs_to_bytes(&[expr])?)),
        ExprSimplifyResult::Original(_) => Ok(None),
    }
}

unsafe extern "C" fn simplify_fn_wrapper(
    udf: &FFI_ScalarUDFSimplify,
    args: SVec<u8>,
    schema: SVec<u8>,
) -> FFI_SimplifyResult {
    SIMPLIFY_CALLS.fetch_add(1, Ordering::Relaxed);
    // A panic must not unwind into the host: it becomes an error message.
    match catch_panic("simplify", || simplify_local(udf, &args, &schema)) {
        Ok(Ok(Some(bytes))) => FFI_SimplifyResult::Simplified(bytes.as_slice().into()),
        Ok(Ok(None)) => FFI_SimplifyResult::Original,
        Ok(Err(e)) => FFI_SimplifyResult::Error(e.to_string().as_str().into()),
        Err(message) => FFI_SimplifyResult::Error(message.as_str().into()),
    }
}

unsafe extern "C" fn documentation_fn_wrapper(
    udf: &FFI_ScalarUDFSimplify,
) -> FFI_Option<FFI_Documentation> {
    // A released table has no documentation to give, and a panic must not
    // unwind into the host.
    catch_panic("documentation", || {
        udf.udf()
            .ok()
            .and_then(|udf| udf.documentation().map(FFI_Documentation::from))
    })
    .ok()
    .flatten()
    .into()
}

unsafe extern "C" fn listed_argument_types_fn_wrapper(
    udf: &FFI_ScalarUDFSimplify,
) -> SVec<WrappedSchema> {
    // A released table, or a type the C data interface cannot carry, lists
    // nothing: the host then shows the UDF without parameters.
    catch_panic("listed_argument_types", || match udf.udf() {
        Ok(udf) => listed_argument_types(&udf.signature().type_signature)
            .iter()
            .filter_map(|types| argument_schema(types).ok())
            .collect(),
        Err(_) => SVec::new(),
    })
    .unwrap_or_default()
}

unsafe extern "C" fn protocol_version_fn_wrapper() -> u64 {
    SIMPLIFY_PROTOCOL_VERSION
}

unsafe extern "C" fn datafusion_version_fn_wrapper() -> u64 {
    datafusion_ffi::version()
}

unsafe extern "C" fn clone_fn_wrapper(udf: &FFI_ScalarUDFSimplify) -> FFI_ScalarUDFSimplify {
    match udf.udf() {
        Ok(inner) => Arc::clone(inner).into(),
        // Cloning a released table yields another released table.
        Err(_) => FFI_ScalarUDFSimplify {
            private_data: std::ptr::null_mut(),
            ..*udf
        },
    }
}

unsafe extern "C" fn release_fn_wrapper(udf: &mut FFI_ScalarUDFSimplify) {
    if udf.private_data.is_null() {
        return;
    }
    // SAFETY: the private data is the box created in `From<Arc<ScalarUDF>>`;
    // nulling the pointer makes a second release a no-op.
    drop(unsafe { Box::from_raw(udf.private_data as *mut SimplifyPrivateData) });
    udf.private_data = std::ptr::null_mut();
}

impl From<Arc<ScalarUDF>> for FFI_ScalarUDFSimplify {
    fn from(udf: Arc<ScalarUDF>) -> Self {
        let private_data = Box::new(SimplifyPrivateData { udf });
        Self {
            simplify: simplify_fn_wrapper,
            protocol_version: protocol_version_fn_wrapper,
            datafusion_version: datafusion_version_fn_wrapper,
            clone: clone_fn_wrapper,
            release: release_fn_wrapper,
            private_data: Box::into_raw(private_data) as *mut c_void,
            documentation: documentation_fn_wrapper,
            listed_argument_types: listed_argument_types_fn_wrapper,
        }
    }
}

impl Clone for FFI_ScalarUDFSimplify {
    fn clone(&self) -> Self {
        // SAFETY: `clone` is this table's own function.
        unsafe { (self.clone)(self) }
    }
}

impl Drop for FFI_ScalarUDFSimplify {
    fn drop(&mut self) {
        // SAFETY: `release` is this table's own function, called once here.
        unsafe { (self.release)(self) }
    }
}

/// What a library hands to a host: datafusion-ffi's UDF and its simplify slot.
#[repr(C)]
#[derive(Debug, Clone)]
pub struct FFI_SimplifyingScalarUDF {
    pub udf: FFI_ScalarUDF,
    pub simplify: FFI_ScalarUDFSimplify,
}

impl From<Arc<ScalarUDF>> for FFI_SimplifyingScalarUDF {
    fn from(udf: Arc<ScalarUDF>) -> Self {
        Self {
            udf: FFI_ScalarUDF::from(Arc::clone(&udf)),
            simplify: FFI_ScalarUDFSimplify::from(udf),
        }
    }
}

/// A UDF from another library whose `simplify` runs there, across FFI.
#[derive(Debug)]
pub struct ForeignSimplifyingUDF {
    inner: Arc<dyn ScalarUDFImpl>,
    simplify: FFI_ScalarUDFSimplify,
    /// datafusion-ffi's user-defined signature, with the producer's listed
    /// argument types as further arms.
    signature: Signature,
    /// The producer's documentation, fetched across on first use.
    documentation: OnceLock<Option<Documentation>>,
}

/// The host's signature for a foreign UDF: datafusion-ffi's user-defined one,
/// which calls the producer's `coerce_types`, plus an `Exact` arm per listed
/// argument list. A producer lists the `Exact` arms of its own signature, so
/// the host resolves calls as the producer would; the arms also let
/// `information_schema` list the parameters.
fn foreign_signature(ffi_signature: &Signature, listed: Vec<Vec<DataType>>) -> Signature {
    if listed.is_empty() {
        return ffi_signature.clone();
    }
    let arms = std::iter::once(TypeSignature::UserDefined)
        .chain(listed.into_iter().map(TypeSignature::Exact))
        .collect();
    Signature::one_of(arms, ffi_signature.volatility)
}

impl TryFrom<&FFI_SimplifyingScalarUDF> for ForeignSimplifyingUDF {
    type Error = DataFusionError;

    /// Checks the protocol and DataFusion versions before anything is called.
    fn try_from(udf: &FFI_SimplifyingScalarUDF) -> Result<Self> {
        if udf.simplify.private_data.is_null() {
            return plan_err!("the foreign UDF `{}` has no simplify data", udf.udf.name);
        }
        // SAFETY: both are plain functions of the producing library.
        let (protocol, datafusion) = unsafe {
            (
                (udf.simplify.protocol_version)(),
                (udf.simplify.datafusion_version)(),
            )
        };
        if protocol != SIMPLIFY_PROTOCOL_VERSION {
            return plan_err!(
                "the foreign UDF `{}` speaks simplify protocol version {protocol}; \
                 this host speaks version {SIMPLIFY_PROTOCOL_VERSION}",
                udf.udf.name
            );
        }
        if datafusion != datafusion_ffi::version() {
            return plan_err!(
                "the foreign UDF `{}` was built with DataFusion {datafusion}; this host runs \
                 DataFusion {}, and the FFI ABI differs between major versions",
                udf.udf.name,
                datafusion_ffi::version()
            );
        }
        let inner: Arc<dyn ScalarUDFImpl> = (&udf.udf).into();
        // SAFETY: the producer's function over its own table.
        let listed = unsafe { (udf.simplify.listed_argument_types)(&udf.simplify) };
        let listed = listed
            .iter()
            .map(|schema| {
                let schema = Schema::try_from(&schema.0)?;
                Ok(schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            signature: foreign_signature(inner.signature(), listed),
            inner,
            simplify: udf.simplify.clone(),
            documentation: OnceLock::new(),
        })
    }
}

impl TryFrom<&FFI_SimplifyingScalarUDF> for ScalarUDF {
    type Error = DataFusionError;

    fn try_from(udf: &FFI_SimplifyingScalarUDF) -> Result<Self> {
        Ok(ScalarUDF::new_from_impl(ForeignSimplifyingUDF::try_from(
            udf,
        )?))
    }
}

impl PartialEq for ForeignSimplifyingUDF {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name()
            && std::ptr::eq(self.simplify.private_data, other.simplify.private_data)
    }
}

impl Eq for ForeignSimplifyingUDF {}

impl Hash for ForeignSimplifyingUDF {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        std::ptr::hash(self.simplify.private_data, state);
    }
}

impl ScalarUDFImpl for ForeignSimplifyingUDF {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let arg_bytes = exprs_to_bytes(&args)?;
        let schema_bytes = schema_to_bytes(info.schema())?;
        // SAFETY: `simplify` is the producer's function over its own table,
        // which `self` keeps alive; the byte buffers are moved to it.
        let result = unsafe {
            (self.simplify.simplify)(
                &self.simplify,
                arg_bytes.as_slice().into(),
                schema_bytes.as_slice().into(),
            )
        };
        match result {
            FFI_SimplifyResult::Simplified(bytes) => {
                let mut exprs = exprs_from_bytes(&bytes)?;
                match (exprs.pop(), exprs.is_empty()) {
                    (Some(expr), true) => Ok(ExprSimplifyResult::Simplified(expr)),
                    _ => plan_err!("{} returned a malformed simplification", self.name()),
                }
            }
            FFI_SimplifyResult::Original => Ok(ExprSimplifyResult::Original(args)),
            FFI_SimplifyResult::Error(message) => Err(ffi_datafusion_err!("{message}")),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.documentation
            .get_or_init(|| {
                // SAFETY: the producer's function over its own table, which
                // `self` keeps alive.
                let doc = unsafe { (self.simplify.documentation)(&self.simplify) };
                doc.as_ref().map(Documentation::from)
            })
            .as_ref()
    }
}
