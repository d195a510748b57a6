//! Schedules on both backends. The statements are the same text on SQLite
//! and PostgreSQL, so one implementation, stamped out for each backend by
//! `schedule_store!`, serves both.
//!
//! Exactly once: the leader's pass starts a tick's run or task with the
//! tick's idempotency key, then moves the schedule on with
//! [`ScheduleStore::record_tick`], a compare-and-set on the schedule's
//! revision and next tick. A pass that loses the race (another instance, an
//! edit) changes nothing, and a tick fired again starts nothing new.

use super::{Result, Store};
use crate::error::StoreError;

/// A stored schedule, as read.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub workflow: Option<String>,
    pub workflow_version: Option<i64>,
    /// JSON object.
    pub inputs: String,
    /// JSON `NewTask`.
    pub task: Option<String>,
    pub cron: Option<String>,
    pub time_zone: String,
    pub at: Option<i64>,
    pub missed_policy: String,
    pub overlap_policy: String,
    pub state: String,
    pub next_fire_at: Option<i64>,
    pub last_tick_at: Option<i64>,
    pub last_outcome: Option<String>,
    pub last_run_id: Option<i64>,
    pub last_task_id: Option<i64>,
    pub last_detail: Option<String>,
    pub fired_count: i64,
    pub missed_count: i64,
    pub revision: i64,
    pub created_by: String,
    pub updated_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A schedule's definition to write (checked by `ScheduleSpec::parse`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDef {
    pub name: String,
    pub description: Option<String>,
    pub workflow: Option<String>,
    pub workflow_version: Option<i64>,
    pub inputs: String,
    pub task: Option<String>,
    pub cron: Option<String>,
    pub time_zone: String,
    pub at: Option<i64>,
    pub missed_policy: &'static str,
    pub overlap_policy: &'static str,
    pub state: &'static str,
    pub next_fire_at: Option<i64>,
}

/// What one tick did, written with the schedule's move to its next tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TickRecord {
    pub schedule_id: i64,
    /// The revision and next tick the pass planned from: the write happens
    /// only if both are unchanged.
    pub revision: i64,
    pub due: i64,
    pub next_fire_at: Option<i64>,
    pub state: &'static str,
    pub tick: i64,
    pub outcome: &'static str,
    pub run_id: Option<i64>,
    pub task_id: Option<i64>,
    pub detail: Option<String>,
    pub fired: i64,
    pub missed: i64,
}

/// What an earlier tick started, found by the tick's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Run(i64),
    Task(i64),
}

#[allow(async_fn_in_trait)]
pub trait ScheduleStore {
    /// `Conflict` if the name is taken or the schedules are at their limit.
    async fn create_schedule(
        &self,
        def: &ScheduleDef,
        by: &str,
        now_us: i64,
    ) -> Result<ScheduleRow>;
    async fn schedule(&self, id: i64) -> Result<Option<ScheduleRow>>;
    /// By name.
    async fn schedules(&self) -> Result<Vec<ScheduleRow>>;
    /// Replaces the definition if the schedule is still at `revision`
    /// (`Conflict` otherwise, `NotFound` if it is gone).
    async fn update_schedule(
        &self,
        id: i64,
        revision: i64,
        def: &ScheduleDef,
        by: &str,
        now_us: i64,
    ) -> Result<ScheduleRow>;
    /// `NotFound` if there was none.
    async fn delete_schedule(&self, id: i64) -> Result<()>;
    /// Schedules whose next tick is at or before `now_us`, oldest first.
    async fn due_schedules(&self, now_us: i64, limit: i64) -> Result<Vec<ScheduleRow>>;
    /// The earliest next tick of any schedule.
    async fn next_schedule_due(&self) -> Result<Option<i64>>;
    /// Moves a schedule past a tick; `false` if it changed since it was read.
    async fn record_tick(&self, tick: &TickRecord, now_us: i64) -> Result<bool>;
    /// The run or task a tick's key started, if any.
    async fn started_by_key(&self, key: &str) -> Result<Option<Started>>;
    /// Whether a run or task is still active (queued, running, waiting).
    async fn is_active(&self, started: Started) -> Result<bool>;
}

mod sql {
    const COLUMNS: &str = "id, name, description, workflow, workflow_version, inputs, task, \
        cron, time_zone, at, missed_policy, overlap_policy, state, next_fire_at, last_tick_at, \
        last_outcome, last_run_id, last_task_id, last_detail, fired_count, missed_count, \
        revision, created_by, updated_by, created_at, updated_at";

    pub fn select(tail: &str) -> String {
        format!("SELECT {COLUMNS} FROM schedules {tail}")
    }

    pub fn create() -> String {
        format!(
            "INSERT INTO schedules (name, description, workflow, workflow_version, inputs, task, \
             cron, time_zone, at, missed_policy, overlap_policy, state, next_fire_at, \
             created_by, updated_by, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $15 \
             WHERE (SELECT COUNT(*) FROM schedules) < $16 RETURNING {COLUMNS}"
        )
    }

    pub fn update() -> String {
        format!(
            "UPDATE schedules SET name = $3, description = $4, workflow = $5, \
             workflow_version = $6, inputs = $7, task = $8, cron = $9, time_zone = $10, at = $11, \
             missed_policy = $12, overlap_policy = $13, state = $14, next_fire_at = $15, \
             updated_by = $16, updated_at = $17, revision = revision + 1 \
             WHERE id = $1 AND revision = $2 RETURNING {COLUMNS}"
        )
    }

    pub const DELETE: &str = "DELETE FROM schedules WHERE id = $1";
    pub const NEXT_DUE: &str = "SELECT MIN(next_fire_at) FROM schedules";
    pub const RECORD_TICK: &str = "UPDATE schedules SET next_fire_at = $4, state = $5, \
        last_tick_at = $6, last_outcome = $7, last_run_id = COALESCE($8, last_run_id), \
        last_task_id = COALESCE($9, last_task_id), last_detail = $10, \
        fired_count = fired_count + $11, missed_count = missed_count + $12, \
        revision = revision + 1, updated_at = $13 \
        WHERE id = $1 AND revision = $2 AND next_fire_at = $3";
    pub const RUN_BY_KEY: &str = "SELECT id FROM runs WHERE idempotency_key = $1";
    pub const TASK_BY_KEY: &str = "SELECT id FROM tasks WHERE idempotency_key = $1";
    pub const RUN_ACTIVE: &str =
        "SELECT COUNT(*) FROM runs WHERE id = $1 AND status IN ('running', 'waiting_approval')";
    pub const TASK_ACTIVE: &str =
        "SELECT COUNT(*) FROM tasks WHERE id = $1 AND status IN ('queued', 'running')";
}

/// Binds a definition's fields, in the order both statements take them.
macro_rules! bind_def {
    ($query:expr, $def:expr) => {
        $query
            .bind(&$def.name)
            .bind(&$def.description)
            .bind(&$def.workflow)
            .bind($def.workflow_version)
            .bind(&$def.inputs)
            .bind(&$def.task)
            .bind(&$def.cron)
            .bind(&$def.time_zone)
            .bind($def.at)
            .bind($def.missed_policy)
            .bind($def.overlap_policy)
            .bind($def.state)
            .bind($def.next_fire_at)
    };
}

/// The trait for one backend; `$write` and `$read` name its pools.
macro_rules! schedule_store {
    ($store:ty, $write:ident, $read:ident) => {
        impl ScheduleStore for $store {
            async fn create_schedule(
                &self,
                def: &ScheduleDef,
                by: &str,
                now_us: i64,
            ) -> Result<ScheduleRow> {
                bind_def!(sqlx::query_as::<_, ScheduleRow>(&sql::create()), def)
                    .bind(by)
                    .bind(now_us)
                    .bind(drover_protocol::limits::MAX_SCHEDULES)
                    .fetch_optional(self.$write())
                    .await
                    .map_err(|e| super::name_taken(e, "schedule", &def.name))?
                    .ok_or_else(|| super::too_many("schedule", drover_protocol::limits::MAX_SCHEDULES))
            }

            async fn schedule(&self, id: i64) -> Result<Option<ScheduleRow>> {
                Ok(
                    sqlx::query_as::<_, ScheduleRow>(&sql::select("WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.$read())
                        .await?,
                )
            }

            async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
                Ok(
                    sqlx::query_as::<_, ScheduleRow>(&sql::select("ORDER BY name"))
                        .fetch_all(self.$read())
                        .await?,
                )
            }

            async fn update_schedule(
                &self,
                id: i64,
                revision: i64,
                def: &ScheduleDef,
                by: &str,
                now_us: i64,
            ) -> Result<ScheduleRow> {
                let update = sql::update();
                let query = sqlx::query_as::<_, ScheduleRow>(&update)
                    .bind(id)
                    .bind(revision);
                let row = bind_def!(query, def)
                    .bind(by)
                    .bind(now_us)
                    .fetch_optional(self.$write())
                    .await
                    .map_err(|e| super::name_taken(e, "schedule", &def.name))?;
                match row {
                    Some(row) => Ok(row),
                    None => match self.schedule(id).await? {
                        None => Err(StoreError::NotFound),
                        Some(now) => Err(StoreError::Conflict(format!(
                            "schedule {id} changed since revision {revision} (it is at {}): read it again",
                            now.revision
                        ))),
                    },
                }
            }

            async fn delete_schedule(&self, id: i64) -> Result<()> {
                let done = sqlx::query(sql::DELETE)
                    .bind(id)
                    .execute(self.$write())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn due_schedules(&self, now_us: i64, limit: i64) -> Result<Vec<ScheduleRow>> {
                Ok(sqlx::query_as::<_, ScheduleRow>(&sql::select(
                    "WHERE next_fire_at IS NOT NULL AND next_fire_at <= $1 \
                     ORDER BY next_fire_at LIMIT $2",
                ))
                .bind(now_us)
                .bind(limit)
                .fetch_all(self.$write())
                .await?)
            }

            async fn next_schedule_due(&self) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar::<_, Option<i64>>(sql::NEXT_DUE)
                    .fetch_one(self.$write())
                    .await?)
            }

            async fn record_tick(&self, t: &TickRecord, now_us: i64) -> Result<bool> {
                let done = sqlx::query(sql::RECORD_TICK)
                    .bind(t.schedule_id)
                    .bind(t.revision)
                    .bind(t.due)
                    .bind(t.next_fire_at)
                    .bind(t.state)
                    .bind(t.tick)
                    .bind(t.outcome)
                    .bind(t.run_id)
                    .bind(t.task_id)
                    .bind(&t.detail)
                    .bind(t.fired)
                    .bind(t.missed)
                    .bind(now_us)
                    .execute(self.$write())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn started_by_key(&self, key: &str) -> Result<Option<Started>> {
                let run: Option<i64> = sqlx::query_scalar(sql::RUN_BY_KEY)
                    .bind(key)
                    .fetch_optional(self.$write())
                    .await?;
                if let Some(id) = run {
                    return Ok(Some(Started::Run(id)));
                }
                let task: Option<i64> = sqlx::query_scalar(sql::TASK_BY_KEY)
                    .bind(key)
                    .fetch_optional(self.$write())
                    .await?;
                Ok(task.map(Started::Task))
            }

            async fn is_active(&self, started: Started) -> Result<bool> {
                let (query, id) = match started {
                    Started::Run(id) => (sql::RUN_ACTIVE, id),
                    Started::Task(id) => (sql::TASK_ACTIVE, id),
                };
                let n: i64 = sqlx::query_scalar(query)
                    .bind(id)
                    .fetch_one(self.$write())
                    .await?;
                Ok(n > 0)
            }
        }
    };
}

schedule_store!(super::sqlite::SqliteStore, writer, reader);
schedule_store!(super::postgres::PgStore, pool, pool);

delegate_to_backend!(ScheduleStore {
    async fn create_schedule(&self, def: &ScheduleDef, by: &str, now_us: i64) -> Result<ScheduleRow>;
    async fn schedule(&self, id: i64) -> Result<Option<ScheduleRow>>;
    async fn schedules(&self) -> Result<Vec<ScheduleRow>>;
    async fn update_schedule(&self, id: i64, revision: i64, def: &ScheduleDef, by: &str, now_us: i64) -> Result<ScheduleRow>;
    async fn delete_schedule(&self, id: i64) -> Result<()>;
    async fn due_schedules(&self, now_us: i64, limit: i64) -> Result<Vec<ScheduleRow>>;
    async fn next_schedule_due(&self) -> Result<Option<i64>>;
    async fn record_tick(&self, tick: &TickRecord, now_us: i64) -> Result<bool>;
    async fn started_by_key(&self, key: &str) -> Result<Option<Started>>;
    async fn is_active(&self, started: Started) -> Result<bool>;
});
