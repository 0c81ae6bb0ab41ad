//! Kubernetes resource quantities (`resource.Quantity`): a decimal number with an optional
//! binary (`Ki` … `Ei`) or decimal (`n u m k M G T P E`) suffix or a decimal exponent
//! (`1e3`). k8s-openapi keeps them as strings; the checks need numbers.

/// The value of a quantity as a float (`"250m"` → 0.25, `"1Gi"` → 1073741824), or `None`
/// when the text is not a quantity.
pub(crate) fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// CPU in millicores (`"1.5"` → 1500, `"250m"` → 250, `"12345678n"` → 12).
pub(crate) fn millicores(q: &str) -> Option<u64> {
    parse(q).map(|v| (v * 1000.0).round().max(0.0) as u64)
}

/// Bytes (`"1Gi"` → 1073741824, `"129M"` → 129000000).
pub(crate) fn bytes(q: &str) -> Option<u64> {
    parse(q).map(|v| v.round().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_quantities_parse() {
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("0.5"), Some(500));
        assert_eq!(millicores("123456789n"), Some(123));
        assert_eq!(millicores("1500u"), Some(2));
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("128974848"), Some(128_974_848));
        assert_eq!(bytes("129M"), Some(129_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("12Qi"), None);
        assert_eq!(bytes(""), None);
    }
}
