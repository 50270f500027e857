//! Cron target: CronJob schedules (five fields, macros, `@every`, `CRON_TZ=`), parsed and then
//! evaluated, since the controller evaluates every schedule it accepts.

use skiff_controllers::cron::Schedule;

use crate::input::text;

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
];

/// No panic parsing or evaluating; the next time is after the start, and the last time between
/// two instants lies between them.
#[test]
fn cron_target() {
    let start = jiff::Timestamp::from_second(1_767_225_600).unwrap();
    bolero::check!(name = "cron").for_each(|input: &[u8]| {
        let zone = ZONES[input.len() % ZONES.len()];
        let input = text(input);
        for tz in [None, Some(zone)] {
            let Ok(schedule) = Schedule::parse_in(&input, tz) else {
                continue;
            };
            if let Some(next) = schedule.next_after(start) {
                assert!(next > start, "{input:?}: next {next} after {start}");
            }
            let until = start + jiff::SignedDuration::from_hours(24 * 40);
            if let Some(last) = schedule.last_between(start, until) {
                assert!(last > start && last <= until, "{input:?}: last {last}");
            }
            // Near the end of time there may be no next run; it must not panic.
            let _ = schedule.next_after(jiff::Timestamp::MAX - jiff::SignedDuration::from_hours(1));
        }
    });
}
