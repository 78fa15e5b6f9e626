//! How deeply protobuf bytes nest, read without decoding them.
//!
//! Decoding is recursive, one call per nested message, and its depth is the
//! input's: bytes from elsewhere must be measured before they are decoded.
//! The wire format does not say which length-delimited fields are messages,
//! so every one is read as a message until it fails to parse: the depth found
//! is never less than the real one, and for any input DataFusion writes it is
//! the real one (plus, rarely, a level for a string that happens to parse).
//! Each byte is read once, without recursion.

/// The deepest nesting of messages `bytes` may hold, or `Err(depth)` as soon
/// as it exceeds `limit`.
pub fn nesting(bytes: &[u8], limit: usize) -> Result<usize, usize> {
    // Ranges still to read: (position, end, depth of the message they are in).
    let mut pending = vec![(0, bytes.len(), 1)];
    let mut deepest = 0;
    while let Some((mut position, end, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if depth > limit {
            return Err(depth);
        }
        while position < end {
            let Some((key, after_key)) = varint(bytes, position, end) else {
                break;
            };
            position = after_key;
            let next = match key & 7 {
                // varint
                0 => varint(bytes, position, end).map(|(_, after)| after),
                // fixed 64 and 32 bits
                1 => Some(position + 8),
                5 => Some(position + 4),
                // length-delimited: possibly a message, read after the rest of this one
                2 => varint(bytes, position, end).and_then(|(length, start)| {
                    let stop = start.checked_add(usize::try_from(length).ok()?)?;
                    (stop <= end).then(|| {
                        pending.push((stop, end, depth));
                        pending.push((start, stop, depth + 1));
                        end
                    })
                }),
                // groups (deprecated) and invalid wire types end the reading of this range
                _ => None,
            };
            match next {
                Some(next) if next <= end => position = next,
                _ => break,
            }
        }
    }
    Ok(deepest)
}

/// The varint at `position`, and the position after it.
fn varint(bytes: &[u8], mut position: usize, end: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if position >= end {
            return None;
        }
        let byte = bytes[position];
        position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, position));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth` messages, each holding the next in field 1.
    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x08, 0x01];
        for _ in 1..depth {
            let mut outer = vec![0x0a];
            let mut length = bytes.len();
            while length >= 0x80 {
                outer.push((length as u8) | 0x80);
                length >>= 7;
            }
            outer.push(length as u8);
            outer.extend(bytes);
            bytes = outer;
        }
        bytes
    }

    #[test]
    fn measures_nested_messages() {
        for depth in [1, 2, 10, 300] {
            assert_eq!(nesting(&nested(depth), 1000), Ok(depth));
        }
        assert_eq!(nesting(&nested(50), 20), Err(21));
        assert_eq!(nesting(&[], 10), Ok(1));
        // Truncated and junk input ends the reading; it never panics.
        let deep = nested(40);
        for cut in 0..deep.len() {
            assert!(nesting(&deep[..cut], 100).is_ok());
        }
        assert!(nesting(&[0xff; 64], 10).is_ok());
    }
}
