//! The cases of a fuzz run: each valid payload as it is, then empty, huge and
//! known-panicking inputs, then random mutations, each one a function of the
//! run's seed and its own index only.

use super::mutation::Mutation;
use super::payloads::{Payload, DECIMAL_CALL};
use super::rng::Rng;

/// A number from the environment, decimal or `0x` hexadecimal.
pub fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    Some(
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .unwrap_or_else(|e| panic!("{name}={value}: {e}")),
    )
}

/// The run's seed: `AUTOGRAD_FUZZ_SEED`, or a fixed one.
pub fn seed() -> u64 {
    env_u64("AUTOGRAD_FUZZ_SEED").unwrap_or(0x5EED_0FF1)
}

/// One fuzz case: a payload and what was done to each of its halves.
#[derive(Clone)]
pub struct Case {
    pub payload: usize,
    pub args: Mutation,
    pub schema: Mutation,
}

impl Case {
    /// Whether the payload goes out as it is.
    pub fn is_unchanged(&self) -> bool {
        matches!(
            (&self.args, &self.schema),
            (Mutation::Unchanged, Mutation::Unchanged)
        )
    }
}

/// The cases every run starts with: each payload as it is, then empty, huge
/// and known-panicking inputs.
pub fn fixed_cases(payloads: &[Payload]) -> Vec<Case> {
    let decimal = payloads
        .iter()
        .position(|p| p.call == DECIMAL_CALL)
        .expect("the payload with a decimal literal");
    let mut cases: Vec<Case> = (0..payloads.len())
        .map(|payload| Case {
            payload,
            args: Mutation::Unchanged,
            schema: Mutation::Unchanged,
        })
        .collect();
    use Mutation::*;
    for (args, schema) in [
        (Empty, Unchanged),
        (Unchanged, Empty),
        (Empty, Empty),
        (HugeJunk { seed: 1 }, Unchanged),
        (Unchanged, HugeJunk { seed: 2 }),
        (Repeat { len: 512 << 10 }, Unchanged),
        (Unchanged, Repeat { len: 512 << 10 }),
        (ShortenDecimal, Unchanged),
    ] {
        cases.push(Case {
            payload: decimal,
            args,
            schema,
        });
    }
    cases
}

/// The valid payloads' bytes, the donors that splices take pieces from.
pub struct Donors {
    pub args: Vec<Vec<u8>>,
    pub schema: Vec<Vec<u8>>,
}

impl Donors {
    pub fn new(payloads: &[Payload]) -> Self {
        Self {
            args: payloads.iter().map(|p| p.args_bytes.clone()).collect(),
            schema: payloads.iter().map(|p| p.schema_bytes.clone()).collect(),
        }
    }
}

/// Case `index` of the run seeded with `seed`: a fixed case, or a random
/// mutation of a random payload.
pub fn case(index: u64, seed: u64, payloads: &[Payload], fixed: &[Case], donors: &Donors) -> Case {
    if let Some(case) = usize::try_from(index).ok().and_then(|i| fixed.get(i)) {
        return case.clone();
    }
    let mut rng = Rng::for_case(seed, index);
    let payload = rng.below(payloads.len());
    let p = &payloads[payload];
    // Mostly the expression bytes; the schema alone or both as well.
    let (mutate_args, mutate_schema) = match rng.weighted(&[60, 25, 15]) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let mut mutation = |mutate: bool, len: usize, donors: &[Vec<u8>]| match mutate {
        true => Mutation::random(&mut rng, len, donors),
        false => Mutation::Unchanged,
    };
    Case {
        payload,
        args: mutation(mutate_args, p.args_bytes.len(), &donors.args),
        schema: mutation(mutate_schema, p.schema_bytes.len(), &donors.schema),
    }
}

/// The mutated argument and schema bytes of `case`.
pub fn bytes(case: &Case, payloads: &[Payload], donors: &Donors) -> (Vec<u8>, Vec<u8>) {
    let p = &payloads[case.payload];
    (
        case.args.apply(&p.args_bytes, &donors.args),
        case.schema.apply(&p.schema_bytes, &donors.schema),
    )
}
