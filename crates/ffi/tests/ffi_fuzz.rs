//! Malformed input across the FFI boundary: mutated argument and schema bytes
//! sent to the simplify slot of the real cdylib, loaded with `dlopen`.
//!
//! Every case must come back as an error, or as a derivative that is a valid
//! expression, equal to the one the same call gives in this process, and,
//! where the primal is smooth, equal to its finite differences — never as a
//! crash, and never as a panic unwinding into the host. Cases run in child
//! processes (see `fuzz/isolation.rs`), so a crash is reported with a
//! reproducer.
//!
//! ```sh
//! cargo test -p datafusion-autograd-ffi --test ffi_fuzz                          # 1,000 random cases
//! AUTOGRAD_FUZZ_CASES=20000 cargo test -p datafusion-autograd-ffi --test ffi_fuzz # the full run
//! AUTOGRAD_FUZZ_SEED=7 AUTOGRAD_FUZZ_ONLY=1234 cargo test …                       # one case
//! ```

#[path = "fuzz/cases.rs"]
mod cases;
#[path = "fuzz/isolation.rs"]
mod isolation;
#[path = "fuzz/mutation.rs"]
mod mutation;
#[path = "fuzz/nesting.rs"]
mod nesting;
#[path = "fuzz/oracle.rs"]
mod oracle;
#[path = "fuzz/payloads.rs"]
mod payloads;
#[path = "fuzz/rng.rs"]
mod rng;

use std::fmt::Write;
use std::ops::Range;
use std::sync::LazyLock;

use datafusion_autograd::Derivative;
use datafusion_autograd_ffi::codec::{exprs_from_bytes, schema_from_bytes};
use datafusion_autograd_ffi::host::{cargo_built_library, AutogradLibrary};
use datafusion_autograd_ffi::FFI_SimplifyingScalarUDF;

use cases::{case, env_u64, fixed_cases, seed, Case, Donors};
use mutation::Mutation;
use oracle::{Numeric, NumericChecker, Outcome};
use payloads::{payloads, Payload, DECIMAL_CALL};
use rng::Rng;

/// Random cases in the default run; `AUTOGRAD_FUZZ_CASES` overrides it.
const DEFAULT_CASES: u64 = 1_000;

/// The cases every run starts with (see [`fixed_cases`]).
const FIXED_CASES: u64 = 24;

static LIBRARY: LazyLock<AutogradLibrary> = LazyLock::new(|| {
    // SAFETY: the cdylib cargo built from this crate.
    unsafe { AutogradLibrary::load(&cargo_built_library().unwrap()).unwrap() }
});

/// Everything a child needs to run cases.
struct Fuzz {
    seed: u64,
    payloads: Vec<Payload>,
    fixed: Vec<Case>,
    donors: Donors,
    tables: Vec<(Derivative, FFI_SimplifyingScalarUDF)>,
    checker: NumericChecker,
}

/// What a range of cases came to.
#[derive(Default)]
struct Tally {
    errors: u64,
    caught_panics: u64,
    derivatives: u64,
    numerically_checked: u64,
    points: u64,
}

impl Fuzz {
    fn new() -> Self {
        let payloads = payloads();
        Self {
            seed: seed(),
            fixed: fixed_cases(&payloads),
            donors: Donors::new(&payloads),
            tables: Derivative::ALL
                .into_iter()
                .map(|m| (m, LIBRARY.table(m).unwrap()))
                .collect(),
            checker: NumericChecker::new(),
            payloads,
        }
    }

    fn case(&self, index: u64) -> Case {
        case(index, self.seed, &self.payloads, &self.fixed, &self.donors)
    }

    fn bytes(&self, case: &Case) -> (Vec<u8>, Vec<u8>) {
        cases::bytes(case, &self.payloads, &self.donors)
    }

    /// Runs case `index`; `Err` says what it did wrong.
    fn run(&self, index: u64, tally: &mut Tally) -> Result<(), String> {
        let case = self.case(index);
        let (args, schema) = self.bytes(&case);
        let marker = self.payloads[case.payload].marker;
        let table = &self.tables.iter().find(|(m, _)| *m == marker).unwrap().1;
        let across = oracle::over_ffi(table, &args, &schema)?;
        let here = oracle::in_process(marker, &args, &schema);
        if across != here {
            return Err(format!(
                "across FFI and in this process the call differs:\n  FFI:        {across:?}\n  in process: {here:?}"
            ));
        }
        let derivative = match across {
            Outcome::Error(message) => {
                tally.errors += 1;
                tally.caught_panics += u64::from(message.starts_with("simplify panicked"));
                // The payloads themselves are valid calls: they must differentiate.
                if case.is_unchanged() {
                    return Err(format!("a valid payload was refused: {message}"));
                }
                return Ok(());
            }
            Outcome::Simplified(derivative) => derivative,
        };
        tally.derivatives += 1;
        // The call decoded on the other side, so it decodes here too.
        let decoded_args = exprs_from_bytes(&args).map_err(|e| e.to_string())?;
        let decoded_schema = schema_from_bytes(&schema).map_err(|e| e.to_string())?;
        if !oracle::host_would_plan(marker, &decoded_args, &decoded_schema) {
            // A call no host sends (a column missing from the schema, a
            // tangent that is not a number): any expression will do, as the
            // host could not plan it.
            return Ok(());
        }
        oracle::check_valid(&derivative, &decoded_schema)?;
        let mut rng = Rng::for_case(self.seed ^ 0x90_1475, index);
        match self.checker.check(
            marker,
            &decoded_args,
            &decoded_schema,
            &derivative,
            &mut rng,
        )? {
            Numeric::Matched(points) => {
                tally.numerically_checked += 1;
                tally.points += points as u64;
            }
            Numeric::NotApplicable(why) if case.is_unchanged() => {
                return Err(format!(
                    "a valid payload could not be checked numerically: {why}"
                ));
            }
            Numeric::NotApplicable(_) => {}
        }
        Ok(())
    }

    /// What reproduces case `index`: the payload, the mutations, the bytes.
    fn reproducer(&self, index: u64) -> String {
        let case = self.case(index);
        let (args, schema) = self.bytes(&case);
        let p = &self.payloads[case.payload];
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let args_file = dir.join(format!("ffi_fuzz-{:#x}-{index}.args.bin", self.seed));
        let schema_file = dir.join(format!("ffi_fuzz-{:#x}-{index}.schema.bin", self.seed));
        let _ = std::fs::write(&args_file, &args);
        let _ = std::fs::write(&schema_file, &schema);
        let mut out = String::new();
        let _ = writeln!(out, "reproducer: payload #{} `{}`", case.payload, p.call);
        let _ = writeln!(out, "  argument bytes: {}", case.args);
        let _ = writeln!(out, "  schema bytes:   {}", case.schema);
        let _ = writeln!(
            out,
            "  arguments ({} bytes, {}): {}",
            args.len(),
            args_file.display(),
            hex(&args)
        );
        let _ = writeln!(
            out,
            "  schema ({} bytes, {}): {}",
            schema.len(),
            schema_file.display(),
            hex(&schema)
        );
        let _ = writeln!(
            out,
            "  rerun: AUTOGRAD_FUZZ_SEED={:#x} AUTOGRAD_FUZZ_ONLY={index} cargo test -p datafusion-autograd-ffi --test ffi_fuzz",
            self.seed
        );
        out
    }
}

/// Bytes as hex, shortened past 2 KiB (the files hold them all).
fn hex(bytes: &[u8]) -> String {
    const SHOWN: usize = 2048;
    let mut out: String = bytes
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    if bytes.len() > SHOWN {
        let _ = write!(out, "… ({} more bytes)", bytes.len() - SHOWN);
    }
    out
}

/// The cases this run covers: the fixed ones and the random ones, or one.
fn all_cases(fixed: u64) -> Range<u64> {
    if let Some(only) = env_u64("AUTOGRAD_FUZZ_ONLY") {
        return only..only + 1;
    }
    0..fixed + env_u64("AUTOGRAD_FUZZ_CASES").unwrap_or(DEFAULT_CASES)
}

#[test]
fn mutated_payloads_cross_ffi_as_errors_or_checked_derivatives() {
    let Some(range) = isolation::child_range() else {
        // The payloads are planned in the children, and here only to
        // describe a crash.
        let cases = all_cases(FIXED_CASES);
        println!("seed {:#x}, cases {cases:?}", seed());
        isolation::run_in_children(
            "mutated_payloads_cross_ffi_as_errors_or_checked_derivatives",
            cases,
            |index| Fuzz::new().reproducer(index),
        );
        return;
    };
    let fuzz = Fuzz::new();
    assert_eq!(fuzz.fixed.len() as u64, FIXED_CASES);
    let mut tally = Tally::default();
    for index in range.clone() {
        if let Err(failure) = fuzz.run(index, &mut tally) {
            panic!("case {index}: {failure}\n{}", fuzz.reproducer(index));
        }
    }
    println!(
        "cases {range:?}: {} errors ({} of them caught panics), {} derivatives ({} checked \
         against finite differences at {} points)",
        tally.errors,
        tally.caught_panics,
        tally.derivatives,
        tally.numerically_checked,
        tally.points
    );
}

/// A payload that reaches a panic in datafusion-proto's decoding (a Decimal128
/// whose value is not 16 bytes long) comes back as an error: the producer
/// catches the panic before it can unwind into the host. (The library's own
/// panic hook still prints the panic to stderr, outside the test's capture.)
#[test]
fn a_panic_while_decoding_comes_back_as_an_error() {
    let payloads = payloads();
    let p = payloads.iter().find(|p| p.call == DECIMAL_CALL).unwrap();
    let args = Mutation::ShortenDecimal.apply(&p.args_bytes, &[]);
    assert_ne!(
        args, p.args_bytes,
        "the payload has no Decimal128 value to shorten"
    );
    let table = LIBRARY.table(p.marker).unwrap();
    match oracle::over_ffi(&table, &args, &p.schema_bytes) {
        Ok(Outcome::Error(message)) => assert!(
            message.starts_with("simplify panicked")
                && message.contains("Expected a Vec of length 16 but it was 14"),
            "{message}"
        ),
        other => panic!("the shortened decimal did not reach the panic: {other:?}"),
    }
    // The library serves the next call as before.
    match oracle::over_ffi(&table, &p.args_bytes, &p.schema_bytes) {
        Ok(Outcome::Simplified(_)) => {}
        other => panic!("the library did not recover: {other:?}"),
    }
}

/// The builders of `ffi_fuzz_deep`'s payloads write what the codec reads.
#[test]
fn nested_payload_builders_write_what_the_codec_reads() {
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion_autograd_ffi::codec::expr_from_bytes;
    use datafusion_expr::col;

    let three = -(-(-col("x")));
    assert_eq!(expr_from_bytes(&nesting::negations_node(3)).unwrap(), three);
    assert_eq!(
        exprs_from_bytes(&nesting::negations_list(3)).unwrap(),
        vec![three]
    );

    let item = |t: DataType| DataType::List(std::sync::Arc::new(Field::new("item", t, true)));
    let schema = schema_from_bytes(&nesting::nested_lists_schema(2)).unwrap();
    assert_eq!(
        schema.field(0),
        &std::sync::Arc::new(Field::new("l", item(item(DataType::Float64)), true))
    );
}
