//! Outgoing notifications on both backends: rules, the events they are
//! told about (read from the rows that record them), and deliveries. The
//! statements are the same text on SQLite and PostgreSQL except how an
//! agent's task types are read, so one implementation, stamped out per
//! backend by `notification_store!`, serves both.
//!
//! At least once, from the database. The leader reads each kind of event
//! in `(time, id)` order after a cursor and writes a delivery per matching
//! rule, moving the cursor in the same transaction. A delivery is unique
//! per rule and event key (`ON CONFLICT DO NOTHING`), so reading an event
//! again — a pass cut short, a new leader, the re-read for late commits —
//! never makes a second delivery. A delivery is claimed for an attempt by
//! counting the attempt and pushing its due time past the attempt's end
//! (a lease), and its outcome is recorded only by the claim that made it
//! (`attempts` unchanged): a server that dies mid-attempt leaves it due
//! again once the lease is over, which re-sends it.

use drover_protocol::notification::NotificationEvent;

use super::{Result, Store};
use crate::error::StoreError;
use crate::notification::Event;

/// A stored rule.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct NotificationRuleRow {
    pub id: i64,
    pub name: String,
    /// JSON array of event names.
    pub events: String,
    pub workflow: Option<String>,
    pub task_type: Option<String>,
    pub url: String,
    pub secret: Option<String>,
    pub prefix: Option<String>,
    pub enabled: bool,
    pub enabled_at: i64,
    pub created_by: String,
    pub updated_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl NotificationRuleRow {
    /// The events it listens to (names it does not know are left out).
    pub fn events(&self) -> Vec<NotificationEvent> {
        serde_json::from_str::<Vec<String>>(&self.events)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| NotificationEvent::parse(e))
            .collect()
    }
}

/// A rule's definition to write (checked by `RuleSpec::parse`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRuleDef<'a> {
    pub name: &'a str,
    /// JSON array of event names.
    pub events: String,
    pub workflow: Option<&'a str>,
    pub task_type: Option<&'a str>,
    pub url: &'a str,
    pub enabled: bool,
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub rule_id: i64,
    pub rule_name: String,
    pub event: String,
    pub event_key: String,
    pub event_at: i64,
    pub summary: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery to write, due at once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub rule_id: i64,
    pub rule_name: String,
    pub event: String,
    pub event_key: String,
    pub event_at: i64,
    pub summary: String,
    pub payload: String,
}

/// How far the leader has read one kind of event: the `(time, id)` of the
/// last row it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub at: i64,
    pub id: i64,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempted {
    /// A 2xx answer.
    Delivered { status_code: i64 },
    /// Failed; tried again at `next_at`.
    Retry {
        next_at: i64,
        status_code: Option<i64>,
        error: String,
    },
    /// Failed, and no attempt is left.
    GaveUp {
        status_code: Option<i64>,
        error: String,
    },
}

/// Filters of `GET /api/v1/notifications/deliveries`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryFilter {
    pub rule_id: Option<i64>,
    pub status: Option<&'static str>,
    /// Keyset pagination: only ids below this.
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[allow(async_fn_in_trait)]
pub trait NotificationStore {
    /// `Conflict` if the name is taken or the rules are at their limit.
    async fn create_notification_rule(
        &self,
        def: &NotificationRuleDef<'_>,
        secret: Option<&str>,
        prefix: Option<&str>,
        by: &str,
        now_us: i64,
    ) -> Result<NotificationRuleRow>;
    async fn notification_rule(&self, id: i64) -> Result<Option<NotificationRuleRow>>;
    /// By name.
    async fn notification_rules(&self) -> Result<Vec<NotificationRuleRow>>;
    /// Replaces the definition (`NotFound` if the rule is gone). Enabling a
    /// disabled rule makes it listen from now: what happened meanwhile is
    /// not sent.
    async fn update_notification_rule(
        &self,
        id: i64,
        def: &NotificationRuleDef<'_>,
        by: &str,
        now_us: i64,
    ) -> Result<NotificationRuleRow>;
    /// Deletes the rule and fails its pending deliveries, in one
    /// transaction; the deliveries' history stays. `NotFound` if there was none.
    async fn delete_notification_rule(&self, id: i64, now_us: i64) -> Result<()>;

    /// How far the events of `kind` have been read; `None` before the first pass.
    async fn notification_cursor(&self, kind: NotificationEvent) -> Result<Option<Cursor>>;
    /// Events of `kind` after `after` in `(time, id)` order, up to time
    /// `until_us`, at most `limit`.
    async fn notification_events(
        &self,
        kind: NotificationEvent,
        after: Cursor,
        until_us: i64,
        limit: i64,
    ) -> Result<Vec<Event>>;
    /// Writes the deliveries that are not there yet (by rule and event
    /// key) and moves the cursor of `kind` forward to `cursor` (never
    /// back), in one transaction. Answers the ids of the deliveries written.
    async fn enqueue_deliveries(
        &self,
        new: &[NewDelivery],
        cursor: Option<(NotificationEvent, Cursor)>,
        now_us: i64,
    ) -> Result<Vec<i64>>;

    /// Claims up to `limit` due deliveries for an attempt each: counts the
    /// attempt and makes them due again at `lease_until_us` (when an
    /// attempt cut short by a crash is tried again).
    async fn claim_due_deliveries(
        &self,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>>;
    /// Records attempt number `attempt`'s outcome; `false` (nothing
    /// written) when the delivery was claimed again since, or is no longer pending.
    async fn record_delivery(
        &self,
        id: i64,
        attempt: i64,
        outcome: &Attempted,
        now_us: i64,
    ) -> Result<bool>;
    /// When the earliest pending delivery is due.
    async fn next_delivery_due(&self) -> Result<Option<i64>>;
    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>>;
    /// Newest first.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>>;
    /// Deletes delivered and failed deliveries last changed before
    /// `before_us`; answers how many.
    async fn prune_deliveries(&self, before_us: i64) -> Result<u64>;
}

mod sql {
    const RULE_COLUMNS: &str = "id, name, events, workflow, task_type, url, secret, prefix, \
        enabled, enabled_at, created_by, updated_by, created_at, updated_at";
    pub const DELIVERY_COLUMNS: &str = "id, rule_id, rule_name, event, event_key, event_at, \
        summary, payload, status, attempts, next_attempt_at, last_attempt_at, last_status_code, \
        last_error, delivered_at, created_at, updated_at";

    pub fn select_rules(tail: &str) -> String {
        format!("SELECT {RULE_COLUMNS} FROM notification_rules {tail}")
    }

    pub fn create_rule() -> String {
        format!(
            "INSERT INTO notification_rules (name, events, workflow, task_type, url, enabled, \
             secret, prefix, enabled_at, created_by, updated_by, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9, $10, $10 \
             WHERE (SELECT COUNT(*) FROM notification_rules) < $11 RETURNING {RULE_COLUMNS}"
        )
    }

    pub fn update_rule() -> String {
        format!(
            "UPDATE notification_rules SET name = $2, events = $3, workflow = $4, task_type = $5, \
             url = $6, enabled_at = CASE WHEN $7 AND NOT enabled THEN $9 ELSE enabled_at END, \
             enabled = $7, updated_by = $8, updated_at = $9 WHERE id = $1 RETURNING {RULE_COLUMNS}"
        )
    }

    pub const FAIL_PENDING_OF_RULE: &str = "UPDATE notification_deliveries SET status = 'failed', \
        next_attempt_at = NULL, last_error = 'its rule was deleted', updated_at = $2 \
        WHERE rule_id = $1 AND status = 'pending'";
    pub const DELETE_RULE: &str = "DELETE FROM notification_rules WHERE id = $1";

    pub const CURSOR: &str = "SELECT at, id FROM notification_cursors WHERE kind = $1";
    pub const MOVE_CURSOR: &str = "INSERT INTO notification_cursors (kind, at, id) \
        VALUES ($1, $2, $3) ON CONFLICT (kind) DO UPDATE SET at = excluded.at, id = excluded.id \
        WHERE notification_cursors.at < excluded.at \
        OR (notification_cursors.at = excluded.at AND notification_cursors.id < excluded.id)";

    pub const INSERT_DELIVERY: &str = "INSERT INTO notification_deliveries (rule_id, rule_name, \
        event, event_key, event_at, summary, payload, status, attempts, next_attempt_at, \
        created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8) \
        ON CONFLICT (rule_id, event_key) DO NOTHING RETURNING id";

    /// The outer conditions are checked again on the row that is updated,
    /// so two claims racing (a deposed leader) do not both take it.
    pub fn claim() -> String {
        format!(
            "UPDATE notification_deliveries SET attempts = attempts + 1, next_attempt_at = $2, \
             last_attempt_at = $1, updated_at = $1 \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND id IN ( \
               SELECT id FROM notification_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at, id LIMIT $3) \
             RETURNING {DELIVERY_COLUMNS}"
        )
    }

    pub const RECORD: &str = "UPDATE notification_deliveries SET status = $3, \
        next_attempt_at = $4, last_status_code = $5, last_error = $6, \
        delivered_at = $7, updated_at = $8 \
        WHERE id = $1 AND attempts = $2 AND status = 'pending'";
    pub const NEXT_DUE: &str =
        "SELECT MIN(next_attempt_at) FROM notification_deliveries WHERE status = 'pending'";
    pub const PRUNE: &str = "DELETE FROM notification_deliveries \
        WHERE status IN ('delivered', 'failed') AND updated_at < $1";

    pub fn deliveries() -> String {
        format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries \
             WHERE ($1 IS NULL OR rule_id = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        )
    }

    pub fn delivery() -> String {
        format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE id = $1")
    }

    /// Every kind of event is read as the same columns, in `(time, id)`
    /// order after `($1, $2)` up to time `$3`, at most `$4`. The range on
    /// the time alone is what the (partial) index serves.
    fn page(time: &str, id: &str) -> String {
        format!(
            "{time} >= $1 AND {time} <= $3 AND ({time} > $1 OR {id} > $2) \
             ORDER BY {time}, {id} LIMIT $4"
        )
    }

    pub fn run_failed() -> String {
        format!(
            "SELECT r.id, r.finished_at AS at, r.id AS run_id, CAST(NULL AS TEXT) AS step_id, \
             r.workflow_name AS workflow, r.workflow_version, CAST(NULL AS TEXT) AS task_type, \
             CAST(NULL AS TEXT) AS task_types, r.started_by AS name, CAST(NULL AS TEXT) AS hostname, \
             r.error, CAST(NULL AS TEXT) AS message, CAST(NULL AS BIGINT) AS attempts, \
             CAST(NULL AS BIGINT) AS last_heartbeat_at \
             FROM runs r WHERE r.status = 'failed' AND {}",
            page("r.finished_at", "r.id")
        )
    }

    pub fn task_failed() -> String {
        format!(
            "SELECT t.id, t.finished_at AS at, t.run_id, t.step_id, r.workflow_name AS workflow, \
             r.workflow_version, t.task_type, CAST(NULL AS TEXT) AS task_types, \
             CAST(NULL AS TEXT) AS name, CAST(NULL AS TEXT) AS hostname, t.error, \
             CAST(NULL AS TEXT) AS message, t.attempts, CAST(NULL AS BIGINT) AS last_heartbeat_at \
             FROM tasks t LEFT JOIN runs r ON r.id = t.run_id WHERE t.status = 'failed' AND {}",
            page("t.finished_at", "t.id")
        )
    }

    pub fn approval_waiting() -> String {
        format!(
            "SELECT a.id, a.created_at AS at, a.run_id, a.step_id, r.workflow_name AS workflow, \
             r.workflow_version, CAST(NULL AS TEXT) AS task_type, CAST(NULL AS TEXT) AS task_types, \
             r.started_by AS name, CAST(NULL AS TEXT) AS hostname, CAST(NULL AS TEXT) AS error, \
             a.message, CAST(NULL AS BIGINT) AS attempts, CAST(NULL AS BIGINT) AS last_heartbeat_at \
             FROM approvals a JOIN runs r ON r.id = a.run_id WHERE {}",
            page("a.created_at", "a.id")
        )
    }

    /// Agents are few: no index, and agents back online count too (they
    /// were offline). `task_types` is the backend's JSON text of the list.
    pub fn agent_offline(task_types: &str) -> String {
        format!(
            "SELECT id, offline_at AS at, CAST(NULL AS BIGINT) AS run_id, CAST(NULL AS TEXT) AS step_id, \
             CAST(NULL AS TEXT) AS workflow, CAST(NULL AS BIGINT) AS workflow_version, \
             CAST(NULL AS TEXT) AS task_type, {task_types} AS task_types, name, hostname, \
             CAST(NULL AS TEXT) AS error, CAST(NULL AS TEXT) AS message, \
             CAST(NULL AS BIGINT) AS attempts, last_heartbeat_at \
             FROM agents WHERE offline_at IS NOT NULL AND {}",
            page("offline_at", "id")
        )
    }
}

/// One event as every kind's statement reads it.
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: i64,
    run_id: Option<i64>,
    step_id: Option<String>,
    workflow: Option<String>,
    workflow_version: Option<i64>,
    task_type: Option<String>,
    task_types: Option<String>,
    name: Option<String>,
    hostname: Option<String>,
    error: Option<String>,
    message: Option<String>,
    attempts: Option<i64>,
    last_heartbeat_at: Option<i64>,
}

impl EventRow {
    fn into_event(self, kind: NotificationEvent) -> Event {
        Event {
            kind: Some(kind),
            at_us: self.at,
            subject_id: self.id,
            run_id: self.run_id,
            step_id: self.step_id,
            workflow: self.workflow,
            workflow_version: self.workflow_version,
            task_type: self.task_type,
            task_types: self
                .task_types
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            name: self.name,
            hostname: self.hostname,
            error: self.error,
            message: self.message,
            attempts: self.attempts,
            last_heartbeat_at_us: self.last_heartbeat_at,
        }
    }
}

/// The statement reading events of `kind`; `task_types` is how the backend
/// reads an agent's task types as JSON text.
fn events_sql(kind: NotificationEvent, task_types: &str) -> String {
    match kind {
        NotificationEvent::RunFailed => sql::run_failed(),
        NotificationEvent::TaskFailed => sql::task_failed(),
        NotificationEvent::ApprovalWaiting => sql::approval_waiting(),
        NotificationEvent::AgentOffline => sql::agent_offline(task_types),
    }
}

/// The trait for one backend; `$write` and `$read` name its pools, and
/// `$task_types` reads an agent's task types as JSON text.
macro_rules! notification_store {
    ($store:ty, $write:ident, $read:ident, $task_types:expr) => {
        impl NotificationStore for $store {
            async fn create_notification_rule(
                &self,
                def: &NotificationRuleDef<'_>,
                secret: Option<&str>,
                prefix: Option<&str>,
                by: &str,
                now_us: i64,
            ) -> Result<NotificationRuleRow> {
                sqlx::query_as::<_, NotificationRuleRow>(&sql::create_rule())
                    .bind(def.name)
                    .bind(&def.events)
                    .bind(def.workflow)
                    .bind(def.task_type)
                    .bind(def.url)
                    .bind(def.enabled)
                    .bind(secret)
                    .bind(prefix)
                    .bind(by)
                    .bind(now_us)
                    .bind(drover_protocol::limits::MAX_NOTIFICATION_RULES)
                    .fetch_optional(self.$write())
                    .await
                    .map_err(|e| super::name_taken(e, "notification rule", def.name))?
                    .ok_or_else(|| {
                        super::too_many(
                            "notification rule",
                            drover_protocol::limits::MAX_NOTIFICATION_RULES,
                        )
                    })
            }

            async fn notification_rule(&self, id: i64) -> Result<Option<NotificationRuleRow>> {
                Ok(
                    sqlx::query_as::<_, NotificationRuleRow>(&sql::select_rules("WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.$read())
                        .await?,
                )
            }

            async fn notification_rules(&self) -> Result<Vec<NotificationRuleRow>> {
                Ok(
                    sqlx::query_as::<_, NotificationRuleRow>(&sql::select_rules("ORDER BY name"))
                        .fetch_all(self.$read())
                        .await?,
                )
            }

            async fn update_notification_rule(
                &self,
                id: i64,
                def: &NotificationRuleDef<'_>,
                by: &str,
                now_us: i64,
            ) -> Result<NotificationRuleRow> {
                sqlx::query_as::<_, NotificationRuleRow>(&sql::update_rule())
                    .bind(id)
                    .bind(def.name)
                    .bind(&def.events)
                    .bind(def.workflow)
                    .bind(def.task_type)
                    .bind(def.url)
                    .bind(def.enabled)
                    .bind(by)
                    .bind(now_us)
                    .fetch_optional(self.$write())
                    .await
                    .map_err(|e| super::name_taken(e, "notification rule", def.name))?
                    .ok_or(StoreError::NotFound)
            }

            async fn delete_notification_rule(&self, id: i64, now_us: i64) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(sql::FAIL_PENDING_OF_RULE)
                    .bind(id)
                    .bind(now_us)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(sql::DELETE_RULE)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn notification_cursor(&self, kind: NotificationEvent) -> Result<Option<Cursor>> {
                let row: Option<(i64, i64)> = sqlx::query_as(sql::CURSOR)
                    .bind(kind.as_str())
                    .fetch_optional(self.$write())
                    .await?;
                Ok(row.map(|(at, id)| Cursor { at, id }))
            }

            async fn notification_events(
                &self,
                kind: NotificationEvent,
                after: Cursor,
                until_us: i64,
                limit: i64,
            ) -> Result<Vec<Event>> {
                let rows = sqlx::query_as::<_, EventRow>(&events_sql(kind, $task_types))
                    .bind(after.at)
                    .bind(after.id)
                    .bind(until_us)
                    .bind(limit)
                    .fetch_all(self.$read())
                    .await?;
                Ok(rows.into_iter().map(|r| r.into_event(kind)).collect())
            }

            async fn enqueue_deliveries(
                &self,
                new: &[NewDelivery],
                cursor: Option<(NotificationEvent, Cursor)>,
                now_us: i64,
            ) -> Result<Vec<i64>> {
                let mut tx = self.begin_write().await?;
                let mut written = Vec::new();
                for d in new {
                    let id: Option<i64> = sqlx::query_scalar(sql::INSERT_DELIVERY)
                        .bind(d.rule_id)
                        .bind(&d.rule_name)
                        .bind(&d.event)
                        .bind(&d.event_key)
                        .bind(d.event_at)
                        .bind(&d.summary)
                        .bind(&d.payload)
                        .bind(now_us)
                        .fetch_optional(&mut *tx)
                        .await?;
                    written.extend(id);
                }
                if let Some((kind, c)) = cursor {
                    sqlx::query(sql::MOVE_CURSOR)
                        .bind(kind.as_str())
                        .bind(c.at)
                        .bind(c.id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(written)
            }

            async fn claim_due_deliveries(
                &self,
                now_us: i64,
                lease_until_us: i64,
                limit: i64,
            ) -> Result<Vec<DeliveryRow>> {
                let mut rows = sqlx::query_as::<_, DeliveryRow>(&sql::claim())
                    .bind(now_us)
                    .bind(lease_until_us)
                    .bind(limit)
                    .fetch_all(self.$write())
                    .await?;
                rows.sort_by_key(|d| d.id);
                Ok(rows)
            }

            async fn record_delivery(
                &self,
                id: i64,
                attempt: i64,
                outcome: &Attempted,
                now_us: i64,
            ) -> Result<bool> {
                let (status, next, code, error, delivered) = match outcome {
                    Attempted::Delivered { status_code } => {
                        ("delivered", None, Some(*status_code), None, Some(now_us))
                    }
                    Attempted::Retry {
                        next_at,
                        status_code,
                        error,
                    } => (
                        "pending",
                        Some(*next_at),
                        *status_code,
                        Some(error.as_str()),
                        None,
                    ),
                    Attempted::GaveUp { status_code, error } => {
                        ("failed", None, *status_code, Some(error.as_str()), None)
                    }
                };
                let done = sqlx::query(sql::RECORD)
                    .bind(id)
                    .bind(attempt)
                    .bind(status)
                    .bind(next)
                    .bind(code)
                    .bind(error)
                    .bind(delivered)
                    .bind(now_us)
                    .execute(self.$write())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn next_delivery_due(&self) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar::<_, Option<i64>>(sql::NEXT_DUE)
                    .fetch_one(self.$write())
                    .await?)
            }

            async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>> {
                Ok(sqlx::query_as::<_, DeliveryRow>(&sql::delivery())
                    .bind(id)
                    .fetch_optional(self.$read())
                    .await?)
            }

            async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
                Ok(sqlx::query_as::<_, DeliveryRow>(&sql::deliveries())
                    .bind(f.rule_id)
                    .bind(f.status)
                    .bind(f.before_id)
                    .bind(f.limit)
                    .fetch_all(self.$read())
                    .await?)
            }

            async fn prune_deliveries(&self, before_us: i64) -> Result<u64> {
                let done = sqlx::query(sql::PRUNE)
                    .bind(before_us)
                    .execute(self.$write())
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

notification_store!(super::sqlite::SqliteStore, writer, reader, "task_types");
notification_store!(
    super::postgres::PgStore,
    pool,
    pool,
    "array_to_json(task_types)::text"
);

delegate_to_backend!(NotificationStore {
    async fn create_notification_rule(&self, def: &NotificationRuleDef<'_>, secret: Option<&str>, prefix: Option<&str>, by: &str, now_us: i64) -> Result<NotificationRuleRow>;
    async fn notification_rule(&self, id: i64) -> Result<Option<NotificationRuleRow>>;
    async fn notification_rules(&self) -> Result<Vec<NotificationRuleRow>>;
    async fn update_notification_rule(&self, id: i64, def: &NotificationRuleDef<'_>, by: &str, now_us: i64) -> Result<NotificationRuleRow>;
    async fn delete_notification_rule(&self, id: i64, now_us: i64) -> Result<()>;
    async fn notification_cursor(&self, kind: NotificationEvent) -> Result<Option<Cursor>>;
    async fn notification_events(&self, kind: NotificationEvent, after: Cursor, until_us: i64, limit: i64) -> Result<Vec<Event>>;
    async fn enqueue_deliveries(&self, new: &[NewDelivery], cursor: Option<(NotificationEvent, Cursor)>, now_us: i64) -> Result<Vec<i64>>;
    async fn claim_due_deliveries(&self, now_us: i64, lease_until_us: i64, limit: i64) -> Result<Vec<DeliveryRow>>;
    async fn record_delivery(&self, id: i64, attempt: i64, outcome: &Attempted, now_us: i64) -> Result<bool>;
    async fn next_delivery_due(&self) -> Result<Option<i64>>;
    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>>;
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>>;
    async fn prune_deliveries(&self, before_us: i64) -> Result<u64>;
});
