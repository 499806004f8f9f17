//! Stable short hashes: of a spec (to notice a change a raw writer made without
//! bumping anything) and of a Machine template (to name a MachineSet).

use sha2::{Digest, Sha256};

/// Hex of the SHA-256 of `value`'s JSON, cut to `len` characters. Struct fields
/// serialize in declaration order and maps are sorted, so equal values hash equal.
pub fn short_hash(value: &impl serde::Serialize, len: usize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(len);
    hex
}

/// The hash recorded on the observed item; a different one means a new generation.
pub fn spec_hash(spec: &serde_json::Value) -> String {
    short_hash(spec, 16)
}
