//! API keys: which requests carry one the server accepts.
//!
//! Owns the comparison only; which routes need a key is the route table's
//! (each endpoint says), and how a refusal reads is the face's.

/// True when `keys` is empty (no auth) or the key a request presented (in
/// its face's header, `Face::presented_key`) is one of them.
pub fn authorized(keys: &[String], presented: Option<&str>) -> bool {
    keys.is_empty() || presented.is_some_and(|given| key_matches(keys, given))
}

/// Compares a key with every configured key in time that depends only on
/// the lengths, so that a caller cannot learn a key byte by byte.
fn key_matches(keys: &[String], given: &str) -> bool {
    let mut matched = false;
    for key in keys {
        let (a, b) = (key.as_bytes(), given.as_bytes());
        let mut difference = (a.len() ^ b.len()) as u64;
        for index in 0..a.len().max(b.len()) {
            let x = a.get(index).copied().unwrap_or(0);
            let y = b.get(index).copied().unwrap_or(0);
            difference |= u64::from(x ^ y);
        }
        matched |= difference == 0;
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn keys_match_exactly() {
        let keys = vec!["alpha".to_string(), "beta".to_string()];
        assert!(key_matches(&keys, "beta"));
        assert!(!key_matches(&keys, "bet"));
        assert!(!key_matches(&keys, "betaa"));
        assert!(!key_matches(&keys, ""));
    }
}
