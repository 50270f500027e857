//! Standard five-field cron schedules (minute hour day-of-month month day-of-week) with lists,
//! ranges, steps, month/day names, the @hourly/@daily/… shorthands and `@every <duration>`,
//! evaluated in a CronJob's `timeZone` (IANA name; UTC when unset).

use jiff::tz::TimeZone;

/// Errors of schedule parsing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The schedule is malformed.
    #[error("invalid schedule {0:?}: {1}")]
    Invalid(String, String),
    /// The time zone is not in the time zone database.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    when: When,
    tz: TimeZone,
}

#[derive(Clone, Debug)]
enum When {
    Fields(Box<Fields>),
    /// `@every`: a constant delay, in whole seconds (at least one).
    Every(i64),
}

/// The allowed values of each field.
#[derive(Clone, Debug)]
struct Fields {
    minutes: [bool; 60],
    hours: [bool; 24],
    days: [bool; 32],
    months: [bool; 13],
    weekdays: [bool; 7],
    dom_star: bool,
    dow_star: bool,
}

fn field(spec: &str, min: u32, max: u32, names: &[&str], out: &mut [bool]) -> Result<bool, String> {
    let lookup = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>().map_err(|_| format!("bad value {s:?}"))
    };
    let mut star = false;
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("bad step {s:?}"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err("step must be positive".into());
        }
        let (lo, hi) = if range == "*" || range == "?" {
            star = step == 1;
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (lookup(a)?, lookup(b)?)
        } else {
            let v = lookup(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        // Sunday may be written 7.
        let (lo, hi) = if max == 6 { (lo, hi.min(7)) } else { (lo, hi) };
        if lo < min || hi > max.max(if max == 6 { 7 } else { max }) || lo > hi {
            return Err(format!("{part:?} is out of range {min}-{max}"));
        }
        // A step may be as large as u32::MAX: adding it to the last value must not overflow.
        for v in (lo..=hi).step_by(usize::try_from(step).unwrap_or(usize::MAX)) {
            out[(if max == 6 { v % 7 } else { v }) as usize] = true;
        }
    }
    Ok(star)
}

impl Schedule {
    /// Parses a schedule evaluated in UTC.
    pub fn parse(s: &str) -> Result<Schedule, Error> {
        Schedule::parse_in(s, None)
    }

    /// Parses a schedule evaluated in the IANA time zone `tz` (UTC when `None`).
    pub fn parse_in(s: &str, tz: Option<&str>) -> Result<Schedule, Error> {
        let tz = match tz {
            None => TimeZone::UTC,
            Some(name) => jiff::tz::db()
                .get(name)
                .map_err(|_| Error::UnknownTimeZone(name.to_string()))?,
        };
        let bad = |m: String| Error::Invalid(s.to_string(), m);
        if let Some(d) = s.trim().strip_prefix("@every ") {
            let d: jiff::SignedDuration = d
                .trim()
                .parse()
                .map_err(|e| bad(format!("bad duration: {e}")))?;
            if d.is_negative() || d.is_zero() {
                return Err(bad("the delay must be positive".into()));
            }
            // As robfig/cron: sub-second delays round up to one second.
            let secs = d.as_secs() + i64::from(d.subsec_nanos() > 0 && d.as_secs() == 0);
            return Ok(Schedule {
                when: When::Every(secs),
                tz,
            });
        }
        Ok(Schedule {
            when: When::Fields(Box::new(Fields::parse(s)?)),
            tz,
        })
    }

    /// The first scheduled time strictly after `after`, within about five years.
    pub fn next_after(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        match &self.when {
            // A delay of up to i64::MAX seconds parses: past the end of time there is no next run.
            When::Every(secs) => after
                .as_second()
                .checked_add(*secs)
                .and_then(|s| jiff::Timestamp::from_second(s).ok()),
            When::Fields(f) => f.next_after(after, &self.tz),
        }
    }

    /// The latest scheduled time in `(after, until]`, if any.
    pub fn last_between(
        &self,
        after: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> Option<jiff::Timestamp> {
        if let When::Every(secs) = self.when {
            // after + k*secs, the largest k with the time still <= until.
            let k = (until.as_second() - after.as_second()).div_euclid(secs);
            return (k >= 1)
                .then(|| jiff::Timestamp::from_second(after.as_second() + k * secs).ok())
                .flatten();
        }
        let mut last = None;
        let mut t = after;
        // Walk forward; bounded by the caller's window.
        while let Some(n) = self.next_after(t) {
            if n > until {
                break;
            }
            last = Some(n);
            t = n;
        }
        last
    }
}

impl Fields {
    fn parse(s: &str) -> Result<Fields, Error> {
        let expanded = match s.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let bad = |m: String| Error::Invalid(s.to_string(), m);
        if parts.len() != 5 {
            return Err(bad(format!("expected 5 fields, found {}", parts.len())));
        }
        let mut sch = Fields {
            minutes: [false; 60],
            hours: [false; 24],
            days: [false; 32],
            months: [false; 13],
            weekdays: [false; 7],
            dom_star: false,
            dow_star: false,
        };
        field(parts[0], 0, 59, &[], &mut sch.minutes).map_err(bad)?;
        field(parts[1], 0, 23, &[], &mut sch.hours).map_err(bad)?;
        sch.dom_star = field(parts[2], 1, 31, &[], &mut sch.days).map_err(bad)?;
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        field(parts[3], 1, 12, &MONTHS, &mut sch.months).map_err(bad)?;
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        sch.dow_star = field(parts[4], 0, 6, &DAYS, &mut sch.weekdays).map_err(bad)?;
        Ok(sch)
    }

    /// Whether the schedule runs on `t`'s date (month, day of month, day of week).
    fn date_matches(&self, t: jiff::civil::DateTime) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().to_sunday_zero_offset() as usize];
        // Like cron: when both day fields are restricted, either may match.
        let day_ok = if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        };
        self.months[t.month() as usize] && day_ok
    }

    /// Whether the schedule runs at `t` (the tests' minute-by-minute reference).
    #[cfg(test)]
    fn matches(&self, t: jiff::civil::DateTime) -> bool {
        self.minutes[t.minute() as usize] && self.hours[t.hour() as usize] && self.date_matches(t)
    }

    /// The first scheduled minute strictly after `after` whose wall-clock time in `tz` matches.
    /// A time skipped by a daylight-saving change never runs; a repeated one runs at each instant.
    ///
    /// Every minute is considered, but not walked: while the zone's offset stays the same, wall
    /// time moves with real time, so a minute on a date that does not match skips to the next
    /// local midnight and one in an hour that does not match to the next local hour, never past
    /// the zone's next offset change. (Walking minute by minute, a schedule that never runs, such
    /// as `0 0 30 2 *`, took 2.6 million steps per evaluation.)
    fn next_after(&self, after: jiff::Timestamp, tz: &TimeZone) -> Option<jiff::Timestamp> {
        const HORIZON_MINUTES: i64 = 5 * 366 * 24 * 60;
        let start = after.as_second().div_euclid(60) * 60 + 60;
        let end = start + HORIZON_MINUTES * 60;
        let mut t = start;
        while t < end {
            let ts = jiff::Timestamp::from_second(t).ok()?;
            let local = tz.to_datetime(ts);
            let minute_of_day = i64::from(local.hour()) * 60 + i64::from(local.minute());
            let skip = if !self.date_matches(local) {
                24 * 60 - minute_of_day
            } else if !self.hours[local.hour() as usize] {
                60 - i64::from(local.minute())
            } else if self.minutes[local.minute() as usize] {
                return Some(ts);
            } else {
                1
            };
            let mut next = t + skip * 60;
            if skip > 1
                && let Some(change) = tz.following(ts).next()
            {
                // The first whole minute at or after the offset change (it is after `t`).
                let change = change.timestamp().as_second();
                next = next.min(change.div_euclid(60) * 60 + if change % 60 == 0 { 0 } else { 60 });
            }
            t = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the cron fuzz target: the largest `@every` delay overflowed computing the
    /// next run and panicked the controller.
    #[test]
    fn every_with_the_largest_delay_has_no_next_run() {
        let s = Schedule::parse("@every 9223372036854775807s").unwrap();
        let now = jiff::Timestamp::from_second(1_767_225_600).unwrap();
        assert_eq!(s.next_after(now), None);
        assert_eq!(s.last_between(now, jiff::Timestamp::MAX), None);
    }

    /// Found fuzzing the cron parser (read in the code the target reaches, then replayed by the
    /// target): a step near u32::MAX overflowed when added to the start value (a panic with
    /// overflow checks, a wrapped loop without).
    #[test]
    fn a_huge_step_selects_only_the_start() {
        let s = Schedule::parse("1/4294967295 * * * *").unwrap();
        let now = ts("2026-01-01T00:00:00Z");
        assert_eq!(s.next_after(now), Some(ts("2026-01-01T00:01:00Z")));
        assert_eq!(
            s.next_after(ts("2026-01-01T00:01:00Z")),
            Some(ts("2026-01-01T01:01:00Z"))
        );
        assert!(
            Schedule::parse("59/4294967295 23/4294967295 31/4294967295 12/4294967295 6/4294967295")
                .is_ok()
        );
    }

    /// The minute-by-minute walk that `next_after` replaces, as the reference.
    fn next_by_minute(s: &Schedule, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let When::Fields(f) = &s.when else {
            return s.next_after(after);
        };
        let mut t = after.as_second().div_euclid(60) * 60 + 60;
        for _ in 0..(5 * 366 * 24 * 60) {
            let ts = jiff::Timestamp::from_second(t).ok()?;
            if f.matches(s.tz.to_datetime(ts)) {
                return Some(ts);
            }
            t += 60;
        }
        None
    }

    /// Skipping hours and days gives the same runs as walking every minute, across daylight
    /// saving changes (whole-hour ones and Lord Howe's half-hour ones) and 45 minutes off UTC.
    #[test]
    fn skipping_ahead_finds_the_same_runs_as_walking_every_minute() {
        let schedules = [
            "* * * * *",
            "30 2 * * *",
            "0,30 1-3 * * *",
            "*/7 */5 * * 1-5",
            "15 3 * 3,4,10,11 0",
            "45 1 1-7 * 0",
            "59 23 * * *",
        ];
        // Each zone a little before its 2026 daylight saving changes.
        let cases = [
            ("UTC", "2026-03-07T20:10:00Z"),
            ("Asia/Kathmandu", "2026-03-28T22:59:30Z"),
            ("Europe/Berlin", "2026-03-28T22:59:30Z"),
            ("Europe/Berlin", "2026-10-24T23:00:00Z"),
            ("America/New_York", "2026-03-07T20:10:00Z"),
            ("America/New_York", "2026-10-31T23:31:00Z"),
            ("Australia/Lord_Howe", "2026-04-04T12:00:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T13:45:00Z"),
        ];
        for (zone, start) in cases {
            for text in schedules {
                let s = Schedule::parse_in(text, Some(zone)).unwrap();
                let mut t = ts(start);
                for _ in 0..4 {
                    let next = s.next_after(t);
                    assert_eq!(next, next_by_minute(&s, t), "{text:?} in {zone} after {t}");
                    let Some(next) = next else { break };
                    t = next;
                }
            }
        }
    }

    /// Found fuzzing the cron parser (one such input took 3 s in the target): a schedule that
    /// never runs, or runs only on leap days, is evaluated without walking five years of minutes.
    #[test]
    fn schedules_that_run_rarely_or_never() {
        let now = ts("2026-01-01T00:00:00Z");
        let never = Schedule::parse_in("0 0 30 2 *", Some("Europe/Berlin")).unwrap();
        assert_eq!(never.next_after(now), None);
        assert_eq!(never.last_between(now, ts("2030-01-01T00:00:00Z")), None);
        let leap = Schedule::parse_in("0 0 29 2 *", Some("America/New_York")).unwrap();
        assert_eq!(leap.next_after(now), Some(ts("2028-02-29T05:00:00Z")));
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_times() {
        let every = Schedule::parse("* * * * *").unwrap();
        assert_eq!(
            every.next_after(ts("2026-01-01T00:00:30Z")),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        let quarter = Schedule::parse("*/15 9-17 * * mon-fri").unwrap();
        // 2026-01-03 is a Saturday: next is Monday 09:00.
        assert_eq!(
            quarter.next_after(ts("2026-01-02T17:50:00Z")),
            Some(ts("2026-01-05T09:00:00Z"))
        );
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(
            daily.next_after(ts("2026-03-01T10:00:00Z")),
            Some(ts("2026-03-02T00:00:00Z"))
        );
        let sunday7 = Schedule::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday7.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-04T00:00:00Z"))
        );
        assert_eq!(
            every.last_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:05:30Z")),
            Some(ts("2026-01-01T00:05:00Z"))
        );
    }

    #[test]
    fn time_zones_and_every() {
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        let berlin = Schedule::parse_in("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            berlin.next_after(ts("2026-01-10T12:00:00Z")),
            Some(ts("2026-01-11T08:00:00Z"))
        );
        assert_eq!(
            berlin.next_after(ts("2026-07-10T12:00:00Z")),
            Some(ts("2026-07-11T07:00:00Z"))
        );
        // 02:30 does not exist in Berlin on 2026-03-29 (clocks go 02:00 -> 03:00).
        let skipped = Schedule::parse_in("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            skipped.next_after(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-30T00:30:00Z"))
        );
        assert!(matches!(
            Schedule::parse_in("* * * * *", Some("Mars/Olympus")),
            Err(Error::UnknownTimeZone(_))
        ));
        let every = Schedule::parse("@every 90s").unwrap();
        assert_eq!(
            every.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T00:01:30Z"))
        );
        assert_eq!(
            every.last_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:05:00Z")),
            Some(ts("2026-01-01T00:04:30Z"))
        );
        assert_eq!(
            every.last_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:01:00Z")),
            None
        );
        assert!(Schedule::parse("@every 0s").is_err());
    }

    #[test]
    fn invalid_schedules() {
        for bad in [
            "",
            "* * * *",
            "61 * * * *",
            "* * * * * *",
            "*/0 * * * *",
            "a b c d e",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
