//! Byte-level mutations of valid payloads. Each mutation records everything it
//! needs (positions, donor, junk seed), so its description alone regenerates
//! the bytes.

use std::fmt;

use super::rng::Rng;

/// Bytes at which varints and lengths change meaning.
const INTERESTING_BYTES: [u8; 6] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff];

/// Size of the random payloads `HugeJunk` builds.
pub const HUGE_LEN: usize = 4 << 20;

#[derive(Clone, Debug)]
pub enum Mutation {
    /// The payload as it is.
    Unchanged,
    /// The first `len` bytes.
    Truncate { len: usize },
    /// Bits flipped, as (byte, bit) positions.
    FlipBits { bits: Vec<(usize, u8)> },
    /// Bytes overwritten with boundary values.
    Overwrite { bytes: Vec<(usize, u8)> },
    /// The first `prefix` bytes, then the donor payload from `donor_from` on.
    Splice {
        donor: usize,
        prefix: usize,
        donor_from: usize,
    },
    /// `len` bytes from `from` copied in again at `to`.
    Duplicate { from: usize, len: usize, to: usize },
    /// `len` bytes removed at `from`.
    Delete { from: usize, len: usize },
    /// Random bytes instead of the payload.
    Junk { len: usize, seed: u64 },
    /// No bytes at all.
    Empty,
    /// [`HUGE_LEN`] random bytes.
    HugeJunk { seed: u64 },
    /// The payload repeated up to `len` bytes: protobuf merges the copies,
    /// so repeated fields grow (thousands of expressions or schema fields)
    /// and singular ones are overwritten.
    Repeat { len: usize },
    /// The 16-byte value of the first Decimal128 literal shortened to 14
    /// bytes, the 2 freed bytes spent on a repeated precision field, so that
    /// the message stays well-formed and only the value's length is wrong.
    ShortenDecimal,
}

impl Mutation {
    /// A random mutation of a payload of `len` bytes, given `donors` payloads
    /// of the same kind to splice from.
    pub fn random(rng: &mut Rng, len: usize, donors: &[Vec<u8>]) -> Self {
        let len = len.max(1);
        // unchanged, truncate, flip, overwrite, splice, duplicate, delete, junk, empty,
        // shorten a decimal, huge
        match rng.weighted(&[3, 14, 28, 14, 15, 6, 6, 10, 2, 1, 2]) {
            0 => Mutation::Unchanged,
            1 => Mutation::Truncate {
                len: rng.below(len),
            },
            2 => Mutation::FlipBits {
                bits: (0..1 + rng.below(4))
                    .map(|_| (rng.below(len), rng.below(8) as u8))
                    .collect(),
            },
            3 => Mutation::Overwrite {
                bytes: (0..1 + rng.below(3))
                    .map(|_| {
                        let value = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
                        (rng.below(len), value)
                    })
                    .collect(),
            },
            4 => {
                let donor = rng.below(donors.len());
                Mutation::Splice {
                    donor,
                    prefix: rng.below(len + 1),
                    donor_from: rng.below(donors[donor].len() + 1),
                }
            }
            5 => Mutation::Duplicate {
                from: rng.below(len),
                len: 1 + rng.below(len.min(64)),
                to: rng.below(len + 1),
            },
            6 => Mutation::Delete {
                from: rng.below(len),
                len: 1 + rng.below(len.min(16)),
            },
            7 => Mutation::Junk {
                len: rng.below(300),
                seed: rng.next_u64(),
            },
            8 => Mutation::Empty,
            9 => Mutation::ShortenDecimal,
            _ if rng.below(2) == 0 => Mutation::HugeJunk {
                seed: rng.next_u64(),
            },
            _ => Mutation::Repeat { len: 64 << 10 },
        }
    }

    /// The mutated bytes of `payload`.
    pub fn apply(&self, payload: &[u8], donors: &[Vec<u8>]) -> Vec<u8> {
        let mut out = payload.to_vec();
        let clamp = |i: usize| i.min(payload.len());
        match self {
            Mutation::Unchanged => {}
            Mutation::Truncate { len } => out.truncate(*len),
            Mutation::FlipBits { bits } => {
                for &(byte, bit) in bits {
                    if let Some(b) = out.get_mut(byte) {
                        *b ^= 1 << bit;
                    }
                }
            }
            Mutation::Overwrite { bytes } => {
                for &(at, value) in bytes {
                    if let Some(b) = out.get_mut(at) {
                        *b = value;
                    }
                }
            }
            Mutation::Splice {
                donor,
                prefix,
                donor_from,
            } => {
                let donor = &donors[*donor];
                out.truncate(*prefix);
                out.extend_from_slice(&donor[(*donor_from).min(donor.len())..]);
            }
            Mutation::Duplicate { from, len, to } => {
                let chunk = payload[clamp(*from)..clamp(from + len)].to_vec();
                out.splice(clamp(*to)..clamp(*to), chunk);
            }
            Mutation::Delete { from, len } => {
                out.drain(clamp(*from)..clamp(from + len));
            }
            Mutation::Junk { len, seed } => out = Rng::new(*seed).bytes(*len),
            Mutation::Empty => out.clear(),
            Mutation::HugeJunk { seed } => out = Rng::new(*seed).bytes(HUGE_LEN),
            Mutation::ShortenDecimal => {
                if let Some(at) = decimal128_value(&out) {
                    out[at + 1] = 14;
                    out[at + 16..at + 18].copy_from_slice(&[0x10, 0x05]);
                }
            }
            Mutation::Repeat { len } => {
                out = payload.repeat(len / payload.len().max(1));
            }
        }
        out
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::Unchanged => write!(f, "unchanged"),
            Mutation::Truncate { len } => write!(f, "truncated to {len} bytes"),
            Mutation::FlipBits { bits } => {
                let bits: Vec<String> = bits.iter().map(|(b, i)| format!("{b}.{i}")).collect();
                write!(f, "bits flipped at byte.bit {}", bits.join(", "))
            }
            Mutation::Overwrite { bytes } => {
                let bytes: Vec<String> = bytes
                    .iter()
                    .map(|(at, v)| format!("{at}={v:#04x}"))
                    .collect();
                write!(f, "bytes overwritten: {}", bytes.join(", "))
            }
            Mutation::Splice {
                donor,
                prefix,
                donor_from,
            } => write!(
                f,
                "first {prefix} bytes, then payload #{donor} from byte {donor_from}"
            ),
            Mutation::Duplicate { from, len, to } => {
                write!(f, "{len} bytes from {from} copied in at {to}")
            }
            Mutation::Delete { from, len } => write!(f, "{len} bytes deleted at {from}"),
            Mutation::Junk { len, seed } => write!(f, "{len} random bytes (seed {seed:#x})"),
            Mutation::Empty => write!(f, "empty"),
            Mutation::HugeJunk { seed } => write!(f, "{HUGE_LEN} random bytes (seed {seed:#x})"),
            Mutation::Repeat { len } => write!(f, "repeated up to {len} bytes"),
            Mutation::ShortenDecimal => write!(f, "Decimal128 value shortened to 14 bytes"),
        }
    }
}

/// Where the first `Decimal128` message sits in `bytes`: its 16-byte value
/// field (tag 0x0a, length 16) followed by its precision and scale fields
/// (tags 0x10 and 0x18).
fn decimal128_value(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(22)
        .position(|w| w[0] == 0x0a && w[1] == 16 && w[18] == 0x10 && w[20] == 0x18)
}
