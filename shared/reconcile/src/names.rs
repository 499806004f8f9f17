//! Generated names and uids, from entropy the driver passes in (so decisions stay pure
//! and a simulation replays exactly).

/// splitmix64: spreads one seed over as many values as a decision needs.
fn mix(seed: u128, i: u64) -> u64 {
    let mut z = (seed as u64) ^ ((seed >> 64) as u64) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uid in UUID v4 form.
pub fn uid(entropy: u128) -> String {
    let v = (entropy & !(0xF000u128 << 64) | (0x4000u128 << 64)) & !(0xC000u128 << 48)
        | (0x8000u128 << 48);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `i`th five-character suffix (lowercase consonants and digits, as Kubernetes'
/// generateName uses, so no words are spelled).
pub fn suffix(entropy: u128, i: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = mix(entropy, i);
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_uuid_v4_shaped() {
        let u = uid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn suffixes_differ_by_index() {
        assert_ne!(suffix(7, 0), suffix(7, 1));
        assert_eq!(suffix(7, 3), suffix(7, 3));
    }
}
