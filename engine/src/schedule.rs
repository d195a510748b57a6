//! Schedules, the pure half: parsing a cron expression in a time zone,
//! working out a schedule's next ticks, and planning what a pass of the
//! leader fires when ticks are due (on time, or missed while no server ran).
//!
//! Time is microseconds since the epoch, as everywhere; ticks fall on whole
//! seconds. Cron is read by `croner` (Vixie cron: five fields, or six with
//! seconds first; `@daily` and friends; `L`, `W`, `#`), in an IANA zone from
//! `chrono-tz`, so "9:00 on weekdays in Europe/Berlin" follows daylight
//! saving. A wall-clock time that occurs twice (clocks going back) fires
//! once; one that does not occur (clocks going forward) fires at the first
//! time after the gap.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use drover_protocol::api::NewTask;
use drover_protocol::limits::{
    MAX_CRON_LEN, MAX_FIRES_PER_PASS, MAX_MISSED_COUNT, MAX_SCHEDULE_DESCRIPTION,
    SCHEDULE_KEY_PREFIX,
};
use drover_protocol::schedule::{MissedPolicy, NewSchedule, OverlapPolicy};
use serde_json::{Map, Value};

use crate::domain::check_name;
use crate::error::FieldError;

/// A parsed cron expression and the zone its fields are read in.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    tz: Tz,
}

impl CronSpec {
    /// Parses `expr` in `zone`; the errors name the field (`cron`,
    /// `time_zone`) and say why.
    pub fn parse(expr: &str, zone: &str) -> Result<Self, FieldError> {
        let tz = parse_zone(zone)?;
        if expr.trim().is_empty() || expr.len() > MAX_CRON_LEN {
            return Err(FieldError::new(
                "cron",
                format!("must be 1 to {MAX_CRON_LEN} characters long"),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| {
                FieldError::new("cron", format!("{expr:?} is not a cron expression: {e}"))
            })?;
        let spec = Self { cron, tz };
        if spec.next_after(crate::time::now_us()).is_none() {
            return Err(FieldError::new("cron", format!("{expr:?} never fires")));
        }
        Ok(spec)
    }

    /// The first tick strictly after `us`.
    pub fn next_after(&self, us: i64) -> Option<i64> {
        let mut from = local(us, self.tz)?;
        // In the repeated hour when clocks go back, the search (on wall
        // time) can answer an instant not after the start: search on from
        // the answer's later instant, a few times at most.
        for _ in 0..4 {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            let at = next.timestamp_micros();
            if at > us {
                return Some(at);
            }
            from = self
                .tz
                .from_local_datetime(&next.naive_local())
                .latest()
                .filter(|later| later.timestamp_micros() > at)
                .unwrap_or(next + chrono::TimeDelta::seconds(1));
        }
        None
    }

    /// The last tick strictly before `us`.
    pub fn last_before(&self, us: i64) -> Option<i64> {
        let from = local(us, self.tz)?;
        let prev = self.cron.find_previous_occurrence(&from, false).ok()?;
        let at = prev.timestamp_micros();
        (at < us).then_some(at)
    }

    /// What the expression means, in English.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

fn local(us: i64, tz: Tz) -> Option<DateTime<Tz>> {
    DateTime::<Utc>::from_timestamp_micros(us).map(|t| t.with_timezone(&tz))
}

fn parse_zone(zone: &str) -> Result<Tz, FieldError> {
    Tz::from_str(zone).map_err(|_| {
        FieldError::new(
            "time_zone",
            format!(
                "{zone:?} is not an IANA time zone name (such as \"UTC\" or \"Europe/Berlin\")"
            ),
        )
    })
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum When {
    Cron(Box<CronSpec>),
    /// Once, at this time (µs).
    Once(i64),
}

impl When {
    /// Reads a stored schedule's timing (already validated when written).
    pub fn of(cron: Option<&str>, zone: &str, at_us: Option<i64>) -> Result<Self, FieldError> {
        match (cron, at_us) {
            (Some(expr), _) => Ok(Self::Cron(Box::new(CronSpec::parse(expr, zone)?))),
            (None, Some(at)) => Ok(Self::Once(at)),
            (None, None) => Err(FieldError::new("cron", "a schedule needs `cron` or `at`")),
        }
    }

    /// The first tick strictly after `us`.
    pub fn next_after(&self, us: i64) -> Option<i64> {
        match self {
            Self::Cron(c) => c.next_after(us),
            Self::Once(at) => (*at > us).then_some(*at),
        }
    }

    /// Up to `n` ticks after `us`.
    pub fn upcoming(&self, us: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = us;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    pub fn describe(&self) -> Option<String> {
        match self {
            Self::Cron(c) => Some(c.describe()),
            Self::Once(_) => None,
        }
    }
}

/// What one pass of the leader does with a due schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuePlan {
    /// Ticks to start, oldest first.
    pub fire: Vec<i64>,
    /// Ticks that start nothing because no server ran when they were due.
    pub missed: i64,
    /// The latest of those (recorded when nothing fires).
    pub last_missed: Option<i64>,
    /// The schedule's next tick; `None`: it is done (a one-time schedule).
    pub next: Option<i64>,
}

/// Plans a pass at `now` for a schedule due since `due` (its stored next
/// tick). Ticks older than `now − grace` were missed (no leader saw them in
/// time); the policy says whether the latest of them still starts, once,
/// before the ticks on time.
/// Ticks within the grace all fire, at most [`MAX_FIRES_PER_PASS`] per pass.
pub fn plan_due(when: &When, due: i64, now: i64, grace_us: i64, missed: MissedPolicy) -> DuePlan {
    let cutoff = now - grace_us;
    let mut plan = DuePlan::default();
    if due > now {
        plan.next = Some(due);
        return plan;
    }
    // The missed ticks: [due, cutoff).
    let mut t = Some(due);
    if due < cutoff {
        let mut count = 0;
        while let Some(tick) = t.filter(|&tick| tick < cutoff) {
            count += 1;
            if count >= MAX_MISSED_COUNT {
                // Enough counted: jump to the last missed tick.
                t = when.next_after(cutoff - 1);
                break;
            }
            t = when.next_after(tick);
        }
        plan.missed = count;
        plan.last_missed = match when {
            When::Cron(c) => c.last_before(cutoff),
            When::Once(at) => Some(*at),
        };
    }
    // The ticks on time: [max(due, cutoff), now].
    while let Some(tick) = t.filter(|&tick| tick <= now) {
        if plan.fire.len() >= MAX_FIRES_PER_PASS {
            break;
        }
        plan.fire.push(tick);
        t = when.next_after(tick);
    }
    // Run once: one catch-up for the missed ticks, before those on time.
    if plan.missed > 0 && missed == MissedPolicy::RunOnce {
        if let Some(last) = plan.last_missed {
            plan.fire.insert(0, last);
            plan.missed -= 1;
        }
    }
    plan.next = t;
    plan
}

/// The idempotency key of a schedule's tick: what makes a tick fired twice
/// (by two instances, or again after a crash) start one run or task.
pub fn tick_key(schedule_id: i64, tick_us: i64) -> String {
    format!(
        "{SCHEDULE_KEY_PREFIX}{schedule_id}:{}",
        tick_us.div_euclid(1_000_000)
    )
}

/// A time as RFC 3339 in UTC, whole seconds.
pub fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// What a schedule starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Workflow {
        name: String,
        version: Option<i64>,
        inputs: Map<String, Value>,
    },
    /// Checked by `TaskSpec::parse` when written and again at each tick.
    Task(NewTask),
}

/// A schedule's definition, checked: what the store writes.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: String,
    pub description: Option<String>,
    pub target: Target,
    pub cron: Option<String>,
    pub time_zone: String,
    pub at_us: Option<i64>,
    pub when: When,
    pub missed: MissedPolicy,
    pub overlap: OverlapPolicy,
}

impl ScheduleSpec {
    /// Checks everything that needs no database: names, the target's shape
    /// (a task is checked by `check_task`), the timing. A one-time schedule
    /// before `earliest_at_us` is refused (in the past).
    pub fn parse(
        new: NewSchedule,
        earliest_at_us: i64,
        check_task: impl Fn(&NewTask) -> Result<(), FieldError>,
    ) -> Result<(Self, bool), FieldError> {
        check_name("name", &new.name)?;
        if let Some(d) = &new.description {
            if d.len() > MAX_SCHEDULE_DESCRIPTION {
                return Err(FieldError::new(
                    "description",
                    format!(
                        "is {} bytes; the limit is {MAX_SCHEDULE_DESCRIPTION}",
                        d.len()
                    ),
                ));
            }
        }
        let target = match (new.workflow, new.task) {
            (Some(name), None) => {
                check_name("workflow", &name)?;
                Target::Workflow {
                    name,
                    version: new.version,
                    inputs: new.inputs,
                }
            }
            (None, Some(task)) => {
                if new.version.is_some() || !new.inputs.is_empty() {
                    return Err(FieldError::new(
                        "inputs",
                        "`version` and `inputs` belong to a workflow target, not a task",
                    ));
                }
                if task.idempotency_key.is_some() {
                    return Err(FieldError::new(
                        "task.idempotency_key",
                        "is set by the schedule, one per tick",
                    ));
                }
                if task.run_after_us.is_some() {
                    return Err(FieldError::new(
                        "task.run_after_us",
                        "is set by the schedule's timing",
                    ));
                }
                check_task(&task).map_err(|e| e.within("task"))?;
                Target::Task(task)
            }
            _ => {
                return Err(FieldError::new(
                    "workflow",
                    "a schedule starts either a `workflow` or a `task`: give exactly one",
                ))
            }
        };
        let time_zone = new.time_zone.unwrap_or_else(|| "UTC".to_string());
        let (when, at_us) = match (&new.cron, &new.at) {
            (Some(expr), None) => (
                When::Cron(Box::new(CronSpec::parse(expr, &time_zone)?)),
                None,
            ),
            (None, Some(at)) => {
                parse_zone(&time_zone)?;
                let at_us = DateTime::parse_from_rfc3339(at)
                    .map_err(|e| {
                        FieldError::new(
                            "at",
                            format!("{at:?} is not an RFC 3339 time such as 2026-12-24T18:00:00+01:00: {e}"),
                        )
                    })?
                    .timestamp();
                let at_us = at_us.saturating_mul(1_000_000);
                if at_us < earliest_at_us {
                    return Err(FieldError::new("at", "is in the past"));
                }
                (When::Once(at_us), Some(at_us))
            }
            _ => {
                return Err(FieldError::new(
                    "cron",
                    "a schedule fires by `cron` or once `at` a time: give exactly one",
                ))
            }
        };
        Ok((
            Self {
                name: new.name,
                description: new.description,
                target,
                cron: new.cron,
                time_zone,
                at_us,
                when,
                missed: new.missed,
                overlap: new.overlap,
            },
            new.paused,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp() * S
    }

    fn cron(expr: &str, zone: &str) -> When {
        When::Cron(Box::new(CronSpec::parse(expr, zone).unwrap()))
    }

    #[test]
    fn five_and_six_fields_and_nicknames_parse_and_the_rest_is_refused() {
        assert!(CronSpec::parse("30 2 * * 1-5", "UTC").is_ok());
        assert!(CronSpec::parse("*/5 * * * * *", "UTC").is_ok());
        assert!(CronSpec::parse("@daily", "Europe/Berlin").is_ok());
        let e = CronSpec::parse("61 * * * *", "UTC").unwrap_err();
        assert_eq!(e.field, "cron");
        let e = CronSpec::parse("0 0 1 1 * 2030", "UTC").unwrap_err();
        assert_eq!(e.field, "cron", "a year field is refused");
        let e = CronSpec::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(e.field, "time_zone");
        let e = CronSpec::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert!(e.message.contains("never"), "{e:?}");
    }

    #[test]
    fn weekdays_are_vixie_numbered() {
        // 2026-12-06 is a Sunday: "1-5" is Monday to Friday.
        let w = cron("0 9 * * 1-5", "UTC");
        assert_eq!(
            w.next_after(utc("2026-12-06T10:00:00Z")),
            Some(utc("2026-12-07T09:00:00Z"))
        );
    }

    #[test]
    fn a_zone_follows_daylight_saving() {
        let w = cron("0 9 * * *", "Europe/Berlin");
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            w.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            w.next_after(utc("2026-07-10T00:00:00Z")),
            Some(utc("2026-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn ticks_only_move_forward_across_both_changes_of_the_clock() {
        for expr in ["*/15 * * * *", "30 2 * * *", "0 * * * *"] {
            let w = cron(expr, "Europe/Berlin");
            for (from, to) in [
                ("2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"),
                ("2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"),
            ] {
                let mut t = utc(from);
                let mut seen = std::collections::HashSet::new();
                while t < utc(to) {
                    let next = w.next_after(t).unwrap();
                    assert!(next > t, "{expr}: {next} after {t}");
                    assert!(seen.insert(next), "{expr}: {next} twice");
                    t = next;
                }
            }
        }
        // 02:30 does not exist on 2026-03-29 in Berlin: that day fires once.
        let w = cron("30 2 * * *", "Europe/Berlin");
        let day = w.upcoming(utc("2026-03-28T12:00:00Z"), 2);
        assert_eq!(day.len(), 2);
        assert!(day[1] - day[0] >= 22 * 3600 * S);
    }

    #[test]
    fn a_tick_on_time_fires_and_the_next_is_planned() {
        let w = cron("*/10 * * * * *", "UTC");
        let due = utc("2026-12-06T10:00:10Z");
        let plan = plan_due(&w, due, due + 300_000, 30 * S, MissedPolicy::Skip);
        assert_eq!(plan.fire, vec![due]);
        assert_eq!(plan.missed, 0);
        assert_eq!(plan.next, Some(due + 10 * S));
        let early = plan_due(&w, due, due - 1, 30 * S, MissedPolicy::Skip);
        assert!(early.fire.is_empty());
        assert_eq!(early.next, Some(due));
    }

    #[test]
    fn ticks_late_within_the_grace_all_fire() {
        let w = cron("*/10 * * * * *", "UTC");
        let due = utc("2026-12-06T10:00:10Z");
        let plan = plan_due(&w, due, due + 25 * S, 30 * S, MissedPolicy::Skip);
        assert_eq!(plan.fire, vec![due, due + 10 * S, due + 20 * S]);
        assert_eq!(plan.next, Some(due + 30 * S));
    }

    #[test]
    fn missed_ticks_are_skipped_or_run_once_by_policy() {
        let w = cron("0 * * * * *", "UTC");
        let due = utc("2026-12-06T10:00:00Z");
        // Down for an hour; back 10 s past 11:00:30 with a 30 s grace.
        let now = utc("2026-12-06T11:00:40Z");
        let skip = plan_due(&w, due, now, 30 * S, MissedPolicy::Skip);
        assert!(skip.fire.is_empty());
        assert_eq!(skip.missed, 61, "10:00 to 11:00 inclusive");
        assert_eq!(skip.last_missed, Some(utc("2026-12-06T11:00:00Z")));
        assert_eq!(skip.next, Some(utc("2026-12-06T11:01:00Z")));
        let once = plan_due(&w, due, now, 30 * S, MissedPolicy::RunOnce);
        assert_eq!(once.fire, vec![utc("2026-12-06T11:00:00Z")]);
        assert_eq!(once.missed, 60);
        assert_eq!(once.next, skip.next);
    }

    #[test]
    fn a_long_outage_is_counted_cheaply_and_bounded() {
        let w = cron("* * * * * *", "UTC");
        let due = utc("2026-11-01T00:00:00Z");
        let now = utc("2026-12-06T00:00:00Z");
        let started = std::time::Instant::now();
        let plan = plan_due(&w, due, now, 30 * S, MissedPolicy::Skip);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(plan.missed, MAX_MISSED_COUNT);
        // The ticks within the grace fire, capped per pass.
        assert_eq!(plan.fire.len(), 31);
        assert!(plan.next.unwrap() > now);
        let once = plan_due(&w, due, now, 30 * S, MissedPolicy::RunOnce);
        assert_eq!(once.fire.len(), 32, "the catch-up, then the ticks on time");
        assert_eq!(once.fire[0], now - 31 * S);
    }

    #[test]
    fn a_one_time_schedule_fires_once_or_is_missed() {
        let at = utc("2026-12-06T10:00:00Z");
        let w = When::Once(at);
        let on_time = plan_due(&w, at, at + S, 30 * S, MissedPolicy::Skip);
        assert_eq!(on_time.fire, vec![at]);
        assert_eq!(on_time.next, None);
        let late = plan_due(&w, at, at + 3600 * S, 30 * S, MissedPolicy::Skip);
        assert!(late.fire.is_empty());
        assert_eq!((late.missed, late.next), (1, None));
        let caught = plan_due(&w, at, at + 3600 * S, 30 * S, MissedPolicy::RunOnce);
        assert_eq!(caught.fire, vec![at]);
    }

    #[test]
    fn a_tick_key_is_the_schedule_and_the_second() {
        assert_eq!(tick_key(7, 1_765_000_000_123_456), "schedule:7:1765000000");
    }

    fn new(f: impl FnOnce(&mut NewSchedule)) -> Result<(ScheduleSpec, bool), FieldError> {
        let mut n = NewSchedule {
            name: "nightly".into(),
            workflow: Some("report".into()),
            cron: Some("0 2 * * *".into()),
            ..NewSchedule::default()
        };
        f(&mut n);
        ScheduleSpec::parse(n, utc("2026-12-06T00:00:00Z"), |_| Ok(()))
    }

    #[test]
    fn a_definition_names_its_faulty_field() {
        assert!(new(|_| {}).is_ok());
        let field = |f: fn(&mut NewSchedule)| new(f).unwrap_err().field;
        assert_eq!(field(|n| n.name = "a b".into()), "name");
        assert_eq!(field(|n| n.workflow = None), "workflow");
        assert_eq!(
            field(|n| n.task = Some(NewTask::default())),
            "workflow",
            "both targets"
        );
        assert_eq!(field(|n| n.cron = None), "cron");
        assert_eq!(
            field(|n| n.at = Some("2027-01-01T00:00:00Z".into())),
            "cron"
        );
        assert_eq!(
            field(|n| {
                n.cron = None;
                n.at = Some("tomorrow".into())
            }),
            "at"
        );
        assert_eq!(
            field(|n| {
                n.cron = None;
                n.at = Some("2020-01-01T00:00:00Z".into())
            }),
            "at"
        );
        assert_eq!(field(|n| n.time_zone = Some("Nowhere".into())), "time_zone");
        assert_eq!(
            field(|n| n.description = Some("x".repeat(2000))),
            "description"
        );
        assert_eq!(
            field(|n| {
                n.workflow = None;
                n.task = Some(NewTask {
                    task_type: "echo".into(),
                    idempotency_key: Some("k".into()),
                    ..NewTask::default()
                })
            }),
            "task.idempotency_key"
        );
        let once = new(|n| {
            n.cron = None;
            n.at = Some("2026-12-24T18:00:00+01:00".into())
        })
        .unwrap()
        .0;
        assert_eq!(once.at_us, Some(utc("2026-12-24T17:00:00Z")));
    }
}
