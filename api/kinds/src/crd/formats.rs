//! The string formats Kubernetes validates in custom resources (kube-openapi's `strfmt` registry
//! as apiextensions keeps it); other formats are ignored, as Kubernetes ignores them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;

/// Whether `s` is valid for `format`; unknown formats accept everything.
pub(crate) fn valid(format: &str, s: &str) -> bool {
    match format {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => uri(s),
        "email" => email(s),
        "hostname" => hostname(s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "uuid" => uuid(s, None),
        "uuid3" => uuid(s, Some(b'3')),
        "uuid4" => uuid(s, Some(b'4')),
        "uuid5" => uuid(s, Some(b'5')),
        "hexcolor" => hexcolor(s),
        "rgbcolor" => rgbcolor(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "date" => s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok(),
        "date-time" | "datetime" => date_time(s),
        "duration" => duration(s),
        "isbn" => isbn10(s) || isbn13(s),
        "isbn10" => isbn10(s),
        "isbn13" => isbn13(s),
        "creditcard" => creditcard(s),
        "ssn" => ssn(s),
        _ => true,
    }
}

fn uri(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut b = scheme.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

fn email(s: &str) -> bool {
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(rest)) => &rest[i + 1..],
        _ => s,
    };
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

fn hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn mac(s: &str) -> bool {
    let hex_groups = |sep: char, width: usize| {
        let groups: Vec<&str> = s.split(sep).collect();
        matches!(groups.len() * width / 2, 6 | 8 | 20)
            && groups.len() > 1
            && groups
                .iter()
                .all(|g| g.len() == width && g.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    hex_groups(':', 2) || hex_groups('-', 2) || hex_groups('.', 4)
}

fn uuid(s: &str, version: Option<u8>) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    let variant_ok =
        version.is_none() || (matches!(b[19].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'));
    shape && version.is_none_or(|v| b[14] == v) && variant_ok
}

/// Digits of an ISBN without the separators it may carry.
fn isbn_chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| *c != '-' && *c != ' ').collect()
}

fn isbn10(s: &str) -> bool {
    let c = isbn_chars(s);
    if c.len() != 10
        || !c[..9].iter().all(char::is_ascii_digit)
        || !(c[9].is_ascii_digit() || c[9] == 'X')
    {
        return false;
    }
    let sum: u32 = c
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u32 + 1) * d.to_digit(10).unwrap_or(10))
        .sum();
    sum.is_multiple_of(11)
}

fn isbn13(s: &str) -> bool {
    let c = isbn_chars(s);
    if c.len() != 13 || !c.iter().all(char::is_ascii_digit) {
        return false;
    }
    let sum: u32 = c
        .iter()
        .enumerate()
        .map(|(i, d)| d.to_digit(10).unwrap_or(0) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

fn creditcard(s: &str) -> bool {
    let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
    regex::Regex::new(
        "^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\\d{3})\\d{11}|6[27][0-9]{14})$",
    )
    .is_ok_and(|re| re.is_match(&digits))
}

fn ssn(s: &str) -> bool {
    regex::Regex::new("^\\d{3}[- ]?\\d{2}[- ]?\\d{4}$").is_ok_and(|re| re.is_match(s))
}

fn hexcolor(s: &str) -> bool {
    let h = s.strip_prefix('#').unwrap_or(s);
    matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn rgbcolor(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("rgb(").and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

fn date_time(s: &str) -> bool {
    // a date and a time, with or without an offset
    s.contains(['T', 't'])
        && (s.parse::<jiff::Timestamp>().is_ok() || s.parse::<jiff::civil::DateTime>().is_ok())
}

/// Go-style and long-form durations: `1h30m`, `300ms`, `3 days`, `1w`.
fn duration(s: &str) -> bool {
    let mut rest = s.trim();
    if rest.is_empty() {
        return false;
    }
    const UNITS: &[&str] = &[
        "nanoseconds",
        "nanosecond",
        "ns",
        "microseconds",
        "microsecond",
        "us",
        "µs",
        "milliseconds",
        "millisecond",
        "ms",
        "seconds",
        "second",
        "sec",
        "s",
        "minutes",
        "minute",
        "min",
        "m",
        "hours",
        "hour",
        "hr",
        "h",
        "days",
        "day",
        "d",
        "weeks",
        "week",
        "wk",
        "w",
    ];
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = rest[digits..].trim_start();
        let Some(unit) = UNITS.iter().find(|u| rest.starts_with(**u)) else {
            return false;
        };
        rest = rest[unit.len()..].trim_start();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn formats_accept_and_refuse_like_kubernetes() {
        let table = [
            ("date-time", "2024-02-03T04:05:06.789Z", true),
            ("date-time", "2024-02-03T04:05:06+02:00", true),
            ("date-time", "2024-02-03", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64!", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000", false),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000", true),
            ("email", "a@example.com", true),
            ("email", "example.com", false),
            ("hostname", "web-1.example.com", true),
            ("hostname", "-web", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv6", "fd00::1", true),
            ("ipv6", "10.0.0.1", false),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "01:23:45:67:89:ab", true),
            ("mac", "01:23:45", false),
            ("uri", "https://example.com/x", true),
            ("uri", "no scheme", false),
            ("duration", "1h30m", true),
            ("duration", "3 days", true),
            ("duration", "soon", false),
            ("bsonobjectid", "507f1f77bcf86cd799439011", true),
            ("hexcolor", "#ff0000", true),
            ("rgbcolor", "rgb(255, 0, 0)", true),
            ("rgbcolor", "rgb(256, 0, 0)", false),
            ("isbn10", "0-306-40615-2", true),
            ("isbn13", "978-0-306-40615-7", true),
            ("isbn", "978-0-306-40615-8", false),
            ("creditcard", "4111 1111 1111 1111", true),
            ("ssn", "123-45-6789", true),
            ("ssn", "12-345-6789", false),
            ("int32", "anything", true),
            ("unknown-format", "anything", true),
        ];
        for (format, value, want) in table {
            assert_eq!(valid(format, value), want, "{format} {value:?}");
        }
    }
}
