//! Go's `time.ParseDuration` (the duration syntax of the `skiff.dev/*` annotations, e.g. `60s`,
//! `1m30s`, `1.5h`, `300ms`), so every crate reading those annotations agrees on what they mean.

use std::time::Duration;

/// A string that is not a non-negative Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: want a Go duration such as 60s, 5m or 1h30m")]
pub struct DurationError(pub String);

/// Parses a Go duration (`[0-9]+(\.[0-9]*)?UNIT` repeated, units `ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`; a bare `0` is zero). Negative durations are refused: nothing here waits backwards.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(input.to_string());
    let mut s = input.strip_prefix('+').unwrap_or(input);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (whole, rest) = s.split_at(digits);
        let (frac, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(n)
            }
            None => ("", rest),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let mut value = whole.checked_mul(nanos_per).ok_or_else(err)?;
        let mut scale = nanos_per;
        for d in frac.bytes().take(30) {
            scale /= 10;
            value += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(err)?;
        s = rest;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (s, want) in [
            ("0", Duration::ZERO),
            ("60s", Duration::from_secs(60)),
            ("+5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("300ms", Duration::from_millis(300)),
            ("1us", Duration::from_micros(1)),
            ("2µs", Duration::from_micros(2)),
            ("10ns", Duration::from_nanos(10)),
            (".5s", Duration::from_millis(500)),
            ("1m0.25s", Duration::from_millis(60_250)),
        ] {
            assert_eq!(parse_go_duration(s), Ok(want), "{s}");
        }
        for bad in ["", "60", "s", "-5s", "1d", "1.s.", "5 m", "1h-1m", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} parsed");
        }
    }
}
