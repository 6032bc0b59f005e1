//! Wire ids (spec 1.8): a prefix and a 128-bit ULID in 22 base62
//! characters (`0-9A-Za-z`, left-padded with `0`), so that ids sort by
//! creation time as text. A routine run's id is its engine run's ULID,
//! the Parallel face's `trun_<hex>` of the same 128 bits.

use ulid::Ulid;

const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 characters of a 128-bit value.
pub const BASE62_CHARS: usize = 22;

pub fn base62(mut value: u128) -> String {
    let mut out = [b'0'; BASE62_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&byte| byte as char).collect()
}

/// The value of 22 base62 characters; `None` for anything else (or a
/// value past 128 bits).
pub fn from_base62(text: &str) -> Option<u128> {
    if text.len() != BASE62_CHARS {
        return None;
    }
    text.bytes().try_fold(0u128, |value, byte| {
        let digit = DIGITS.iter().position(|&d| d == byte)? as u128;
        value.checked_mul(62)?.checked_add(digit)
    })
}

/// A fresh id with `prefix`.
pub fn mint(prefix: &str) -> String {
    format!("{prefix}{}", base62(Ulid::new().0))
}

/// The wire id of an engine run (32 hex digits).
pub fn of_run(prefix: &str, run_id: &str) -> String {
    let value = u128::from_str_radix(run_id, 16).unwrap_or_default();
    format!("{prefix}{}", base62(value))
}

/// The engine run id a wire id names, when it has `prefix` and 22 base62
/// characters.
pub fn run_of(prefix: &str, wire: &str) -> Option<String> {
    let value = from_base62(wire.strip_prefix(prefix)?)?;
    Some(format!("{value:032x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_round_trips_and_sorts_like_the_number() {
        for value in [0u128, 1, 61, 62, u64::MAX as u128, u128::MAX] {
            assert_eq!(from_base62(&base62(value)), Some(value));
        }
        assert!(base62(u128::MAX - 1) < base62(u128::MAX));
        assert!(base62(61) < base62(62));
        assert_eq!(from_base62("zzzzzzzzzzzzzzzzzzzzzz"), None, "past 128 bits");
    }

    #[test]
    fn a_run_id_round_trips() {
        let run = "0190f5b2c3d4e5f60718293a4b5c6d7e";
        let wire = of_run("arr_", run);
        assert_eq!(wire.len(), 4 + BASE62_CHARS);
        assert_eq!(run_of("arr_", &wire).as_deref(), Some(run));
        assert_eq!(run_of("ase_", &wire), None);
    }
}
