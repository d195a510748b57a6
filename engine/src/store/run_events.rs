//! A run's history as events (`run_events`): what happened to the run and
//! its steps, and who did it, appended in the transaction of the change it
//! records and never updated. Step states live on `run_steps` and are
//! overwritten (a retried step starts again from `pending`); the events
//! keep what was, so a retried step's first failure, who cancelled a run
//! and when an approval was decided stay told.
//!
//! The advance's events come from the planner's actions in the order they
//! were applied ([`step_change`], written with the rest of the advance);
//! the others are written where the change is made: starting a run
//! (`start_run`, a child run in `waits.rs`), cancelling it, retrying a
//! step, deciding an approval, resolving a wait. Readers order them by
//! time, then id.

use drover_protocol::limits::{MAX_RUN_EVENT_DETAIL_BYTES, RUN_ATTEMPTS_SHOWN, RUN_EVENTS_SHOWN};
use drover_protocol::workflow::{RunAttempt, RunEvent, RunEventKind};

use super::Result;
use crate::error::StoreError;
use crate::workflow::StepStatus;

/// An event to append, as both backends write it (a JSON array of these,
/// unpacked in the database, in order).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct EventWrite {
    pub(crate) run_id: i64,
    pub(crate) kind: &'static str,
    pub(crate) step_id: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) actor: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) detail: Option<String>,
}

impl EventWrite {
    /// An event of the run itself.
    pub(crate) fn run(run_id: i64, kind: RunEventKind) -> Self {
        Self {
            run_id,
            kind: kind.as_str(),
            step_id: None,
            generation: None,
            actor: None,
            status: None,
            detail: None,
        }
    }

    /// An event of one generation of a step.
    pub(crate) fn step(
        run_id: i64,
        kind: RunEventKind,
        step_id: &str,
        generation: Option<i64>,
    ) -> Self {
        Self {
            step_id: Some(step_id.to_string()),
            generation,
            ..Self::run(run_id, kind)
        }
    }

    pub(crate) fn by(self, actor: Option<&str>) -> Self {
        Self {
            actor: actor.map(str::to_string),
            ..self
        }
    }

    pub(crate) fn status(self, status: &str) -> Self {
        Self {
            status: Some(status.to_string()),
            ..self
        }
    }

    /// With `detail`, cut to [`MAX_RUN_EVENT_DETAIL_BYTES`].
    pub(crate) fn detail(self, detail: Option<&str>) -> Self {
        Self {
            detail: detail.map(cut),
            ..self
        }
    }
}

/// `text` cut at a character boundary to at most
/// [`MAX_RUN_EVENT_DETAIL_BYTES`] (and a mark saying so).
fn cut(text: &str) -> String {
    const MARK: &str = "… (cut)";
    if text.len() <= MAX_RUN_EVENT_DETAIL_BYTES {
        return text.to_string();
    }
    let mut end = MAX_RUN_EVENT_DETAIL_BYTES - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

/// What a step of the definition is, for the events of its changes.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepKind {
    /// It has `on_failure_of`: its start and end are a compensation's.
    pub(super) compensation: bool,
    /// It has a `when` condition.
    pub(super) conditional: bool,
}

impl StepKind {
    /// Neither: a step whose end is told plainly.
    pub(super) const PLAIN: StepKind = StepKind {
        compensation: false,
        conditional: false,
    };
}

/// The event of a step going from `before` to `after` in an advance, if
/// that is one worth telling (a step that goes on running is not).
pub(super) fn step_change(
    run_id: i64,
    step_id: &str,
    generation: i64,
    kind: StepKind,
    before: StepStatus,
    after: StepStatus,
    error: Option<&str>,
) -> Option<EventWrite> {
    use RunEventKind as K;
    if before == after {
        return None;
    }
    let event = |k| EventWrite::step(run_id, k, step_id, Some(generation)).status(after.as_str());
    match after {
        StepStatus::Running | StepStatus::Waiting | StepStatus::WaitingApproval
            if before == StepStatus::Pending =>
        {
            Some(event(if kind.compensation {
                K::CompensationStarted
            } else {
                K::StepStarted
            }))
        }
        StepStatus::Succeeded | StepStatus::Failed if kind.compensation => {
            Some(event(K::CompensationFinished).detail(error))
        }
        StepStatus::Succeeded => Some(event(K::StepSucceeded)),
        StepStatus::Failed => Some(event(K::StepFailed).detail(error)),
        StepStatus::Skipped => Some(event(K::StepSkipped).detail(Some(if kind.compensation {
            "nothing it compensates failed"
        } else if kind.conditional {
            "its condition (when) was false"
        } else {
            "it had nothing to do"
        }))),
        _ => None,
    }
}

/// The event of a step the run ended before it could run.
pub(super) fn never_ran(run_id: i64, step_id: &str, generation: i64, run: &str) -> EventWrite {
    EventWrite::step(run_id, RunEventKind::StepSkipped, step_id, Some(generation))
        .status(StepStatus::Skipped.as_str())
        .detail(Some(&format!("the run {run} before it ran")))
}

/// A `run_events` row as read.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunEventRow {
    id: i64,
    at: i64,
    kind: String,
    step_id: Option<String>,
    generation: Option<i64>,
    actor: Option<String>,
    status: Option<String>,
    detail: Option<String>,
}

impl TryFrom<RunEventRow> for RunEvent {
    type Error = StoreError;

    fn try_from(r: RunEventRow) -> Result<Self> {
        Ok(RunEvent {
            seq: r.id,
            at_us: r.at,
            kind: RunEventKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown run event {:?}", r.kind)))?,
            step_id: r.step_id,
            generation: r.generation,
            actor: r.actor,
            status: r.status,
            detail: r.detail,
        })
    }
}

/// A task attempt of a run as read.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunAttemptRow {
    task_id: i64,
    step_id: String,
    generation: i64,
    item_index: i64,
    attempt: i64,
    agent_id: i64,
    claimed_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    outcome: String,
}

impl From<RunAttemptRow> for RunAttempt {
    fn from(r: RunAttemptRow) -> Self {
        RunAttempt {
            task_id: r.task_id,
            step_id: r.step_id,
            generation: r.generation,
            item_index: r.item_index,
            attempt: r.attempt,
            agent_id: r.agent_id,
            claimed_at_us: r.claimed_at,
            started_at_us: r.started_at,
            finished_at_us: r.finished_at,
            outcome: r.outcome,
        }
    }
}

/// A run's newest events, newest first; one more than
/// [`RUN_EVENTS_SHOWN`] says there are older ones (see [`history`]).
const EVENTS_OF: &str = "SELECT id, at, kind, step_id, generation, actor, status, detail \
    FROM run_events WHERE run_id = $1 ORDER BY at DESC, id DESC LIMIT $2";

/// A run's task attempts in claim order, one more than
/// [`RUN_ATTEMPTS_SHOWN`]: the run's tasks by their index, each task's
/// attempts by its key.
const ATTEMPTS_OF: &str = "SELECT a.task_id, COALESCE(t.step_id, '') AS step_id, \
    COALESCE(t.step_generation, 0) AS generation, COALESCE(t.item_index, 0) AS item_index, \
    a.attempt, a.agent_id, a.claimed_at, a.started_at, a.finished_at, a.outcome \
    FROM tasks t JOIN task_attempts a ON a.task_id = t.id WHERE t.run_id = $1 \
    ORDER BY a.claimed_at, a.task_id, a.attempt LIMIT $2";

/// A run's history for `GET /runs/{id}`: its newest events oldest first,
/// its first attempts, and whether either was cut.
pub(super) struct History {
    pub(super) events: Vec<RunEvent>,
    pub(super) events_truncated: bool,
    pub(super) attempts: Vec<RunAttempt>,
    pub(super) attempts_truncated: bool,
}

/// Stamps out `history`, reading a run's [`History`] (two statements,
/// each bounded), for a backend whose reads go to `self.$read()`.
macro_rules! history_of {
    ($store:ty, $read:ident) => {
        impl $store {
            pub(super) async fn history(&self, run_id: i64) -> Result<History> {
                let mut events: Vec<RunEventRow> = sqlx::query_as(EVENTS_OF)
                    .bind(run_id)
                    .bind(RUN_EVENTS_SHOWN + 1)
                    .fetch_all(self.$read())
                    .await?;
                let events_truncated = events.len() as i64 > RUN_EVENTS_SHOWN;
                events.truncate(RUN_EVENTS_SHOWN as usize);
                events.reverse();
                let mut attempts: Vec<RunAttemptRow> = sqlx::query_as(ATTEMPTS_OF)
                    .bind(run_id)
                    .bind(RUN_ATTEMPTS_SHOWN + 1)
                    .fetch_all(self.$read())
                    .await?;
                let attempts_truncated = attempts.len() as i64 > RUN_ATTEMPTS_SHOWN;
                attempts.truncate(RUN_ATTEMPTS_SHOWN as usize);
                Ok(History {
                    events: events
                        .into_iter()
                        .map(RunEvent::try_from)
                        .collect::<Result<_>>()?,
                    events_truncated,
                    attempts: attempts.into_iter().map(RunAttempt::from).collect(),
                    attempts_truncated,
                })
            }
        }
    };
}

history_of!(super::sqlite::SqliteStore, reader);
history_of!(super::postgres::PgStore, pool);

/// PostgreSQL: appends the events of the JSON array bound at `$rows`
/// (rows of [`EventWrite`]) at time `$at`, in the array's order (the ids
/// follow it, and order events of the same time).
macro_rules! pg_insert_events {
    ($rows:literal, $at:literal) => {
        concat!(
            "INSERT INTO run_events (run_id, at, kind, step_id, generation, actor, status, detail) \
             SELECT e.run_id, ",
            $at,
            ", e.kind, e.step_id, e.generation, e.actor, e.status, e.detail \
             FROM ROWS FROM (json_to_recordset(",
            $rows,
            "::json) AS (run_id bigint, kind text, step_id text, generation bigint, actor text, \
             status text, detail text)) WITH ORDINALITY \
             AS e(run_id, kind, step_id, generation, actor, status, detail, n) ORDER BY e.n"
        )
    };
}
pub(super) use pg_insert_events;

/// SQLite: the same from `?1` at `?2`.
const SQLITE_INSERT_EVENTS: &str =
    "INSERT INTO run_events (run_id, at, kind, step_id, generation, actor, status, detail) \
     SELECT json_extract(value, '$.run_id'), ?2, json_extract(value, '$.kind'), \
       json_extract(value, '$.step_id'), json_extract(value, '$.generation'), \
       json_extract(value, '$.actor'), json_extract(value, '$.status'), json_extract(value, '$.detail') \
     FROM json_each(?1) ORDER BY key";

impl super::sqlite::SqliteStore {
    /// Appends `events` inside `tx`, at `now_us`.
    pub(super) async fn write_events(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        events: &[EventWrite],
        now_us: i64,
    ) -> Result<()> {
        if !events.is_empty() {
            sqlx::query(SQLITE_INSERT_EVENTS)
                .bind(serde_json::to_string(events)?)
                .bind(now_us)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

impl super::postgres::PgStore {
    /// Appends `events` inside `tx`, at `now_us`.
    pub(super) async fn write_events(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        events: &[EventWrite],
        now_us: i64,
    ) -> Result<()> {
        if !events.is_empty() {
            sqlx::query(pg_insert_events!("$1", "$2"))
                .bind(serde_json::to_string(events)?)
                .bind(now_us)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: StepKind = StepKind::PLAIN;
    const COMPENSATION: StepKind = StepKind {
        compensation: true,
        conditional: false,
    };

    fn kind_of(e: Option<EventWrite>) -> Option<&'static str> {
        e.map(|e| e.kind)
    }

    #[test]
    fn a_step_tells_its_start_and_end_and_a_compensation_its_own() {
        use StepStatus::*;
        let change =
            |kind, before, after| kind_of(step_change(1, "s", 0, kind, before, after, None));
        assert_eq!(change(PLAIN, Pending, Running), Some("step_started"));
        assert_eq!(
            change(PLAIN, Pending, WaitingApproval),
            Some("step_started")
        );
        assert_eq!(change(PLAIN, Running, Running), None);
        assert_eq!(change(PLAIN, Running, Succeeded), Some("step_succeeded"));
        assert_eq!(change(PLAIN, Running, Failed), Some("step_failed"));
        assert_eq!(change(PLAIN, Pending, Skipped), Some("step_skipped"));
        assert_eq!(
            change(COMPENSATION, Pending, Running),
            Some("compensation_started")
        );
        assert_eq!(
            change(COMPENSATION, Running, Failed),
            Some("compensation_finished")
        );
        assert_eq!(change(COMPENSATION, Pending, Skipped), Some("step_skipped"));
        let failed = step_change(1, "s", 2, PLAIN, Running, Failed, Some("boom")).unwrap();
        assert_eq!(
            (
                failed.generation,
                failed.status.as_deref(),
                failed.detail.as_deref()
            ),
            (Some(2), Some("failed"), Some("boom"))
        );
    }

    #[test]
    fn a_long_detail_is_cut_at_a_character() {
        let long = "é".repeat(MAX_RUN_EVENT_DETAIL_BYTES);
        let cut = EventWrite::run(1, RunEventKind::RunFinished).detail(Some(&long));
        let text = cut.detail.unwrap();
        assert!(text.len() <= MAX_RUN_EVENT_DETAIL_BYTES, "{}", text.len());
        assert!(text.ends_with("… (cut)"));
    }
}
