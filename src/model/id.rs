//! The engine's ids: the 128 bits of a ULID as 32 lowercase hex digits, so
//! that ids sort by creation time.
//!
//! One id names a run or a group in every face; each face adds its own
//! prefix on the wire and takes it off again, so the engine never sees
//! one.

/// A new id. One monotonic generator for the process, so that ids made
/// within the same millisecond (the runs of one add) still sort in the
/// order they were made.
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let ulid = {
        let mut generator = GENERATOR
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        generator
            .get_or_insert_with(ulid::Generator::new)
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
    };
    format!("{:032x}", ulid.0)
}

/// True when `id` has the shape of an engine id: 32 lowercase hex digits.
/// Any other shape names nothing.
pub fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh UUID v4, the reference of one error.
pub fn new_ref_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_a_row_sort_in_order() {
        let ids: Vec<String> = (0..1_000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn ids_are_32_hex_digits() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
        assert!(!is_id("XYZ"));
        assert!(!is_id(&id.to_uppercase()));
    }
}
