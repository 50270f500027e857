//! Go's JSON forms of meta/v1 Time (RFC 3339, seconds), MicroTime (RFC 3339, microseconds) and
//! Duration (`time.Duration.String()`), computed without a time library.

use crate::Error;

/// Unix seconds of Go's zero time (0001-01-01T00:00:00Z), which Kubernetes writes as `null`.
pub(crate) const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// Unix seconds of 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
const YEAR_10000_UNIX: i64 = 253_402_300_800;

/// Unix seconds of 0000-01-01T00:00:00Z.
const YEAR_0_UNIX: i64 = -62_167_219_200;

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn datetime(seconds: i64) -> Result<String, Error> {
    if !(YEAR_0_UNIX..YEAR_10000_UNIX).contains(&seconds) {
        return Err(Error::TimeOutOfRange { seconds });
    }
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// meta/v1 Time: `2006-01-02T15:04:05Z` in UTC; Go's zero time is `None` (JSON null).
pub(crate) fn time(seconds: i64) -> Result<Option<String>, Error> {
    if seconds == GO_ZERO_UNIX {
        return Ok(None);
    }
    Ok(Some(format!("{}Z", datetime(seconds)?)))
}

/// meta/v1 MicroTime: `2006-01-02T15:04:05.000000Z` in UTC; Go's zero time is `None`.
pub(crate) fn micro_time(seconds: i64, nanos: i64) -> Result<Option<String>, Error> {
    // time.Unix(sec, nsec) normalizes nsec outside [0, 1e9).
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or(Error::TimeOutOfRange { seconds })?;
    let nanos = nanos.rem_euclid(1_000_000_000);
    if seconds == GO_ZERO_UNIX && nanos == 0 {
        return Ok(None);
    }
    Ok(Some(format!("{}.{:06}Z", datetime(seconds)?, nanos / 1000)))
}

/// Go's `time.Duration(nanos).String()`: "1h2m3.5s", "1.5ms", "0s".
pub(crate) fn duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    // Built backwards, like Go.
    let mut out: Vec<u8> = Vec::with_capacity(32);
    if u < 1_000_000_000 {
        out.push(b's');
        let prec = match u {
            0 => return "0s".into(),
            1..=999 => {
                out.push(b'n');
                0
            }
            1_000..=999_999 => {
                // "µ" (U+00B5) reversed as bytes.
                out.extend_from_slice(&[0xb5, 0xc2]);
                3
            }
            _ => {
                out.push(b'm');
                6
            }
        };
        u = frac(&mut out, u, prec);
        int(&mut out, u);
    } else {
        out.push(b's');
        u = frac(&mut out, u, 9);
        int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push(b'm');
            int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push(b'h');
                int(&mut out, u);
            }
        }
    }
    if neg {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Pushes (reversed) the fraction of v / 10^prec without trailing zeros; returns v / 10^prec.
fn frac(out: &mut Vec<u8>, mut v: u64, prec: u32) -> u64 {
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            out.push(b'0' + digit);
        }
        v /= 10;
    }
    if print {
        out.push(b'.');
    }
    v
}

/// Pushes (reversed) the decimal digits of v.
fn int(out: &mut Vec<u8>, mut v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    while v > 0 {
        out.push(b'0' + (v % 10) as u8);
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_like_go() {
        assert_eq!(time(0).unwrap().unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            time(1_767_323_045).unwrap().unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(time(951_782_400).unwrap().unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(time(-1).unwrap().unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(time(GO_ZERO_UNIX).unwrap(), None);
        assert_eq!(
            time(GO_ZERO_UNIX + 1).unwrap().unwrap(),
            "0001-01-01T00:00:01Z"
        );
        assert!(time(i64::MAX).is_err());
        assert!(time(i64::MIN).is_err());
        assert_eq!(
            micro_time(1_767_323_045, 123_456_789).unwrap().unwrap(),
            "2026-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            micro_time(1_767_323_045, 0).unwrap().unwrap(),
            "2026-01-02T03:04:05.000000Z"
        );
        assert_eq!(
            micro_time(1, -1).unwrap().unwrap(),
            "1970-01-01T00:00:00.999999Z"
        );
        assert_eq!(micro_time(GO_ZERO_UNIX, 0).unwrap(), None);
        assert!(micro_time(i64::MAX, i64::MAX).is_err());
    }

    #[test]
    fn durations_format_like_go() {
        for (nanos, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (3_300_000_000, "3.3s"),
            (60_000_000_000, "1m0s"),
            (4_000_000_000 * 60 + 5_000_000_000, "4m5s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (-1_500_000_000, "-1.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ] {
            assert_eq!(duration(nanos), want, "{nanos}");
        }
    }
}
