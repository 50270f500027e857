//! Cron schedule syntax as CronJobs accept it: five fields, descriptors such as `@hourly`, and
//! `@every <duration>` (the grammar of robfig/cron's standard parser).

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Checks a CronJob schedule; the error text is the parser's message.
pub fn validate_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule.trim();
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    if let Some(rest) = spec
        .strip_prefix("CRON_TZ=")
        .or_else(|| spec.strip_prefix("TZ="))
    {
        let Some((tz, rest)) = rest.split_once(' ') else {
            return Err(format!(
                "provided bad location {rest}: unknown time zone {rest}"
            ));
        };
        if !valid_time_zone_name(tz) {
            return Err(format!(
                "provided bad location {tz}: unknown time zone {tz}"
            ));
        }
        spec = rest.trim();
    }
    if let Some(desc) = spec.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match desc.strip_prefix("every ") {
                Some(d) => parse_go_duration(d.trim())
                    .map(|_| ())
                    .map_err(|e| format!("failed to parse duration {spec}: {e}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    field(fields[0], 0, 59, &[])?;
    field(fields[1], 0, 23, &[])?;
    field(fields[2], 1, 31, &[])?;
    field(fields[3], 1, 12, MONTHS)?;
    field(fields[4], 0, 6, DAYS)?;
    Ok(())
}

fn field(f: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    for expr in f.split(',') {
        range(expr, min, max, names)?;
    }
    Ok(())
}

fn range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range_part, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    if step.is_some_and(|s| s.contains('/')) {
        return Err(format!("too many slashes: {expr}"));
    }
    let (start, end) = if range_part == "*" || range_part == "?" {
        (min, max)
    } else {
        match range_part.split_once('-') {
            Some((a, b)) => {
                if b.contains('-') {
                    return Err(format!("too many hyphens: {expr}"));
                }
                (value(a, names)?, value(b, names)?)
            }
            None => {
                let v = value(range_part, names)?;
                (v, if step.is_some() { max } else { v })
            }
        }
    };
    if let Some(step) = step {
        let n = positive(step)?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

fn value(v: &str, names: &[&str]) -> Result<u32, String> {
    let lower = v.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(if names.len() == 12 {
            i as u32 + 1
        } else {
            i as u32
        });
    }
    positive(v)
}

fn positive(v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {v}: strconv.Atoi: parsing {v:?}: invalid syntax"
        ));
    }
    v.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {v}: strconv.Atoi: parsing {v:?}: value out of range")
    })
}

/// A Go duration such as `1h30m` or `90s`; returns whole nanoseconds.
fn parse_go_duration(s: &str) -> Result<u128, String> {
    if s.is_empty() {
        return Err(format!("time: invalid duration {s:?}"));
    }
    let bad = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Ok(total as u128)
}

/// A time zone the IANA database knows (`UTC`, `Europe/Berlin`, `America/Argentina/Salta`), as
/// Go's `time.LoadLocation` accepts it for a CronJob (`Local` is refused).
pub(crate) fn valid_time_zone_name(tz: &str) -> bool {
    !tz.is_empty()
        && tz != "Local"
        && !tz.starts_with('/')
        && !tz.ends_with('/')
        && !tz.contains("..")
        && !tz.contains("//")
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b))
        && jiff::tz::db().get(tz).is_ok()
}
