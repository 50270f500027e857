//! Kubernetes resource quantities (`200m`, `32Mi`, `1.5`, `2e3`) as numbers.

/// Parses a quantity into its value (bytes for memory, cores for CPU). `None` if malformed.
pub(crate) fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
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
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = value * mult;
    v.is_finite().then_some(v)
}

/// Bytes of a memory quantity.
pub(crate) fn bytes(q: &str) -> Option<u64> {
    parse(q).filter(|v| *v >= 0.0).map(|v| v.ceil() as u64)
}

/// Millicores of a CPU quantity.
pub(crate) fn millis(q: &str) -> Option<u64> {
    parse(q)
        .filter(|v| *v >= 0.0)
        .map(|v| (v * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(bytes("32Mi"), Some(32 << 20));
        assert_eq!(bytes("64M"), Some(64_000_000));
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("2e3"), Some(2000));
        assert_eq!(millis("200m"), Some(200));
        assert_eq!(millis("1.5"), Some(1500));
        assert_eq!(millis("2"), Some(2000));
        assert_eq!(bytes("12Q"), None);
        assert_eq!(bytes(""), None);
    }
}
