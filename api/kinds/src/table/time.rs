//! Durations and ages formatted the way kubectl prints them.

/// apimachinery's `duration.HumanDuration`: `5s`, `3m2s`, `10m`, `5h`, `3d4h`, `2y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// apimachinery's `duration.ShortHumanDuration`: `5s`, `3m`, `5h`, `3d`, `2y`.
pub fn short_human_duration(seconds: i64) -> String {
    if seconds < -1 {
        "<invalid>".into()
    } else if seconds < 0 {
        "0s".into()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m", seconds / 60)
    } else if seconds < 86400 {
        format!("{}h", seconds / 3600)
    } else if seconds < 86400 * 365 {
        format!("{}d", seconds / 86400)
    } else {
        format!("{}y", seconds / 86400 / 365)
    }
}

/// Parses an RFC 3339 timestamp.
pub(crate) fn parse(ts: &str) -> Option<jiff::Timestamp> {
    ts.parse::<jiff::Timestamp>().ok()
}

/// kubectl's `translateTimestampSince`: the age of `ts` at `now`, `<unknown>` when absent.
pub(crate) fn since(ts: Option<&str>, now: jiff::Timestamp) -> String {
    match ts.and_then(parse) {
        None => "<unknown>".into(),
        Some(t) => human_duration(seconds_between(t, now)),
    }
}

/// Whole seconds from `a` to `b` (negative if `b` is earlier).
pub(crate) fn seconds_between(a: jiff::Timestamp, b: jiff::Timestamp) -> i64 {
    let d = b.as_nanosecond() - a.as_nanosecond();
    (d / 1_000_000_000) as i64
}
