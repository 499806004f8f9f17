//! Kubernetes resource quantities (`100m`, `2`, `0.5`, `128Mi`, `1e9`, `500M`) as whole
//! millicores or bytes, rounded up as the API machinery's `MilliValue()` and `Value()`
//! do (k8s.io/apimachinery `pkg/api/resource/quantity.go`): a request of `0.1m` cpu
//! still takes a millicore.
//!
//! Grammar: `<signed number><suffix>`, suffix one of the binary SI (`Ki` … `Ei`),
//! decimal SI (`n u m "" k M G T P E`) or a decimal exponent (`e<n>`, `E<n>`).

/// A quantity in millis (cpu: millicores), or None when it does not parse, is negative
/// or does not fit.
pub fn millis(q: &str) -> Option<u64> {
    scaled(q, 3)
}

/// A quantity in units (memory: bytes), or None as for [`millis`].
pub fn units(q: &str) -> Option<u64> {
    scaled(q, 0)
}

/// `q × 10^extra_exp10`, rounded up.
fn scaled(q: &str, extra_exp10: i32) -> Option<u64> {
    let q = q.trim();
    let q = q.strip_prefix('+').unwrap_or(q);
    if q.starts_with('-') {
        return None;
    }
    let number_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(number_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (binary_pow, mut exp10) = suffix_scale(suffix)?;
    let mut num: u128 = 0;
    for d in whole.bytes().chain(frac.bytes()) {
        num = num.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    exp10 = exp10
        .checked_add(extra_exp10)?
        .checked_sub(i32::try_from(frac.len()).ok()?)?;
    num = num.checked_mul(1u128.checked_shl(binary_pow)?)?;
    let value = if exp10 >= 0 {
        num.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?
    } else {
        // Dividing by more than 10^38 leaves a value in (0, 1): a non-zero quantity
        // still rounds up to one.
        match 10u128.checked_pow(exp10.unsigned_abs()) {
            Some(div) => num.div_ceil(div),
            None => u128::from(num > 0),
        }
    };
    u64::try_from(value).ok()
}

/// The suffix as (power of two, power of ten).
fn suffix_scale(suffix: &str) -> Option<(u32, i32)> {
    Some(match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exp => {
            let digits = exp.strip_prefix(['e', 'E'])?;
            if digits.is_empty() {
                return None;
            }
            (0, digits.parse().ok()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        assert_eq!(millis("100m"), Some(100));
        assert_eq!(millis("2"), Some(2000));
        assert_eq!(millis("0.5"), Some(500));
        assert_eq!(millis(".25"), Some(250));
        assert_eq!(millis("1.5k"), Some(1_500_000));
        assert_eq!(millis("250000u"), Some(250));
        assert_eq!(millis("1n"), Some(1), "rounds up like MilliValue");
        assert_eq!(millis("0.1m"), Some(1));
        assert_eq!(millis("0"), Some(0));
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(units("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(units("1Gi"), Some(1 << 30));
        assert_eq!(units("1e9"), Some(1_000_000_000));
        assert_eq!(units("1E3"), Some(1000));
        assert_eq!(units("500M"), Some(500_000_000));
        assert_eq!(units("1.5Gi"), Some(3 << 29));
        assert_eq!(units("129104Ki"), Some(129_104 * 1024));
        assert_eq!(units("100"), Some(100));
        assert_eq!(units("1500m"), Some(2), "Value() rounds up");
    }

    #[test]
    fn malformed_or_negative_quantities_are_none() {
        for q in [
            "", "m", "abc", "1Qi", "-1", "1e", "1.2.3", "8Ei0", "99999Ei",
        ] {
            assert_eq!(units(q), None, "{q}");
        }
        assert_eq!(units("1e-400"), Some(1));
    }
}
