//! Random identifiers.

use std::cell::RefCell;

/// Random bytes each thread draws from the system at once: one `getrandom` call makes 64 ids, where the router
/// would otherwise make a system call per request for its `X-Request-Id`.
const BATCH: usize = 1024;

thread_local! {
    /// The thread's unused random bytes, from the index on (bytes before it were handed out and zeroed).
    static RANDOM: RefCell<([u8; BATCH], usize)> = const { RefCell::new(([0; BATCH], BATCH)) };
}

/// 16 bytes from the system's randomness, drawn in batches.
fn random16() -> Result<[u8; 16], getrandom::Error> {
    RANDOM.with_borrow_mut(|(bytes, next)| {
        if *next + 16 > BATCH {
            getrandom::fill(bytes)?;
            *next = 0;
        }
        let taken = &mut bytes[*next..*next + 16];
        let mut out = [0; 16];
        out.copy_from_slice(taken);
        // A byte handed out is not kept.
        taken.fill(0);
        *next += 16;
        Ok(out)
    })
}

/// A random (version 4) UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`; `Err` when the system has no randomness.
pub(crate) fn uuid_v4() -> Result<String, getrandom::Error> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = random16()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = Vec::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push(b'-');
        }
        text.extend([HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
    }
    Ok(String::from_utf8(text).expect("hex digits and dashes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_never_repeat_across_batches() {
        let ids: std::collections::HashSet<String> =
            (0..3 * BATCH / 16).map(|_| uuid_v4().unwrap()).collect();
        assert_eq!(ids.len(), 3 * BATCH / 16);
        for id in &ids {
            let parts: Vec<&str> = id.split('-').collect();
            let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
            assert!(parts[2].starts_with('4'), "version 4: {id}");
            assert!("89ab".contains(&parts[3][..1]), "RFC 4122 variant: {id}");
            assert!(
                id.bytes()
                    .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }
}
