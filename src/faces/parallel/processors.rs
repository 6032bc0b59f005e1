//! The processor names of Parallel's hosted API (spec 7), served offline
//! by the engine's `mock` so that SDK code runs unchanged.
//!
//! Owns the list only; the registry and the processors are the engine's.

/// The hosted processor names, each also with `-fast`.
const HOSTED_BASE_NAMES: [&str; 9] = [
    "lite", "base", "core", "core2x", "pro", "ultra", "ultra2x", "ultra4x", "ultra8x",
];

/// Hosted names whose runs have events enabled by default (spec 7).
const PREMIUM_BASE_NAMES: [&str; 5] = ["pro", "ultra", "ultra2x", "ultra4x", "ultra8x"];

/// Every hosted name, with whether its runs have events on by default.
pub fn hosted() -> Vec<(String, bool)> {
    HOSTED_BASE_NAMES
        .iter()
        .flat_map(|base| {
            let events = PREMIUM_BASE_NAMES.contains(base);
            [(base.to_string(), events), (format!("{base}-fast"), events)]
        })
        .collect()
}
