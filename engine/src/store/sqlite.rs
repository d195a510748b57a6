//! SQLite backend: the embedded, zero-set-up default for one server instance.
//!
//! All writes go through a pool of exactly one connection, so transactions
//! never meet `SQLITE_BUSY` and a claim is naturally a single-writer
//! `UPDATE … RETURNING`; reads use a separate pool and WAL lets them run
//! beside the writer. Multi-row work (submits, results, heartbeats, sweeps)
//! is a fixed number of statements per batch, not one per row: the rows
//! travel as one JSON array that `json_each` unpacks inside SQLite (only the
//! agents' running counts are updated one statement per agent).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use drover_protocol::agent::{HeartbeatResponse, Lease, TaskResult};
use drover_protocol::api::{
    AgentStatus, AgentView, Stats, SubmittedTask, TaskDetail, TaskStatus, TaskView,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::rows::{agent_view, assignment, current_leases, task_detail, task_view};
use super::{
    AgentSession, Claim, Completed, Ending, FreedSlots, QueueStore, Registered, Registration,
    Result, Sweep, SweptBecause, TaskFilter,
};
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::lifecycle::AttemptEnd;

const TASK_COLUMNS: &str = "id, task_type, payload, urgency, time_sensitivity, importance, priority, \
    status, attempts, max_attempts, timeout_ms, retry_backoff_ms, required_labels, idempotency_key, \
    result, error, agent_id, lease_token, run_after, created_at, updated_at, started_at, finished_at, claim_load";

const AGENT_COLUMNS: &str = "id, name, hostname, version, task_types, labels, capacity, running, \
    status, registered_at, last_heartbeat_at";

#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_readers: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // A connection to a local file does not break: sqlx's ping before
        // each acquire would only add a round trip to the database thread.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_readers.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// One instance per SQLite file: nobody else to tell of new work.
    pub(super) async fn notify_work(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin().await?)
    }

    /// One agent's claim inside `tx` (see `QueueStore::claim`).
    async fn claim_in(
        tx: &mut Transaction<'_, Sqlite>,
        agent_id: i64,
        max_tasks: i64,
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Claim> {
        let Some(agent) = sqlx::query(
            "SELECT capacity, running, status, task_types, labels FROM agents WHERE id = ?1",
        )
        .bind(agent_id)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(Claim {
                drain: true,
                ..Claim::default()
            });
        };
        let capacity: i64 = agent.try_get("capacity")?;
        let running: i64 = agent.try_get("running")?;
        let status: String = agent.try_get("status")?;
        let want = max_tasks.min(capacity - running);
        if status != AgentStatus::Online.as_str() || want <= 0 {
            return Ok(Claim {
                tasks: vec![],
                running,
                capacity,
                drain: status != AgentStatus::Online.as_str(),
            });
        }
        let agent_load = super::rows::load(running, capacity);
        let rows = sqlx::query(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, claims = claims + 1, \
             lease_token = random(), agent_id = ?1, claim_load = ?2, started_at = ?3, updated_at = ?3, \
             lease_expires_at = MIN(?3 + ?4, ?3 + timeout_ms * 1000) \
             WHERE id IN ( \
               SELECT id FROM tasks \
               WHERE status = 'queued' AND run_after <= ?3 \
                 AND task_type IN (SELECT value FROM json_each(?5)) \
                 AND (required_labels = '[]' OR NOT EXISTS ( \
                      SELECT 1 FROM json_each(tasks.required_labels) r \
                      WHERE r.value NOT IN (SELECT value FROM json_each(?6)))) \
               ORDER BY rank DESC, id LIMIT ?7) \
             RETURNING id, lease_token, task_type, payload, attempts, max_attempts, timeout_ms, priority, rank",
        )
        .bind(agent_id)
        .bind(agent_load)
        .bind(now_us)
        .bind(lease_ttl_us)
        .bind(agent.try_get::<String, _>("task_types")?)
        .bind(agent.try_get::<String, _>("labels")?)
        .bind(want)
        .fetch_all(&mut **tx)
        .await?;
        let mut ranked = Vec::with_capacity(rows.len());
        for row in &rows {
            ranked.push((row.try_get::<f64, _>("rank")?, assignment!(row)));
        }
        if !ranked.is_empty() {
            let ids =
                serde_json::to_string(&ranked.iter().map(|(_, a)| a.task_id).collect::<Vec<_>>())?;
            sqlx::query(
                "INSERT INTO task_attempts (task_id, lease_token, attempt, agent_id, agent_load, claimed_at, outcome) \
                 SELECT id, lease_token, attempts, ?1, ?2, ?3, 'running' FROM tasks WHERE id IN (SELECT value FROM json_each(?4))",
            )
            .bind(agent_id)
            .bind(agent_load)
            .bind(now_us)
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
        }
        let claimed = ranked.len() as i64;
        if claimed > 0 {
            sqlx::query("UPDATE agents SET running = running + ?1 WHERE id = ?2")
                .bind(claimed)
                .bind(agent_id)
                .execute(&mut **tx)
                .await?;
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.task_id.cmp(&b.1.task_id)));
        Ok(Claim {
            tasks: ranked.into_iter().map(|(_, a)| a).collect(),
            running: running + claimed,
            capacity,
            drain: false,
        })
    }

    /// Ends attempts whose lease is current; stale ones change nothing.
    /// A fixed number of statements per batch: the rows travel as one JSON
    /// array that `json_each` unpacks inside SQLite.
    pub(super) async fn end_attempts(
        tx: &mut Transaction<'_, Sqlite>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<Completed> {
        let (completed, freed) = Self::end_attempts_holding_slots(tx, endings, now_us).await?;
        Self::free_slots(tx, &freed).await?;
        Ok(completed)
    }

    /// Gives agents back the slots their ended attempts held (C -= n).
    pub(super) async fn free_slots(
        tx: &mut Transaction<'_, Sqlite>,
        freed: &FreedSlots,
    ) -> Result<()> {
        for &(agent, n) in freed {
            sqlx::query("UPDATE agents SET running = MAX(running - ?1, 0) WHERE id = ?2")
                .bind(n)
                .bind(agent)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// [`end_attempts`](Self::end_attempts) without giving the agents their
    /// slots back: the caller does that with [`free_slots`](Self::free_slots).
    pub(super) async fn end_attempts_holding_slots(
        tx: &mut Transaction<'_, Sqlite>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<(Completed, FreedSlots)> {
        if endings.is_empty() {
            return Ok((Completed::default(), FreedSlots::default()));
        }
        let leases: Vec<[i64; 2]> = endings.iter().map(|e| [e.task_id, e.lease_token]).collect();
        // CROSS JOIN fixes the join order: by the leases, then each task by
        // its id. Left to itself SQLite walks every running task (the
        // status index) and probes the array for each: with a thousand
        // tasks running, milliseconds per batch of results on the writer.
        let rows = sqlx::query(
            "SELECT t.id, t.lease_token, t.attempts, t.max_attempts, t.retry_backoff_ms, t.agent_id, t.run_id \
             FROM json_each(?1) v CROSS JOIN tasks t ON t.id = json_extract(v.value, '$[0]') \
             WHERE t.lease_token = json_extract(v.value, '$[1]') AND t.status = 'running'",
        )
        .bind(serde_json::to_string(&leases)?)
        .fetch_all(&mut **tx)
        .await?;
        let current = current_leases!(rows);
        let (completed, rows) = super::plan_endings(endings, &current, now_us);
        if rows.is_empty() {
            return Ok((completed, FreedSlots::default()));
        }
        let batch = serde_json::to_string(&rows)?;
        sqlx::query(
            "UPDATE tasks SET status = json_extract(v.value, '$.status'), \
               attempts = attempts + json_extract(v.value, '$.attempts_delta'), \
               run_after = COALESCE(json_extract(v.value, '$.run_after'), run_after), \
               result = json_extract(v.value, '$.result'), error = json_extract(v.value, '$.error'), \
               agent_id = CASE WHEN json_extract(v.value, '$.terminal') THEN agent_id ELSE NULL END, \
               lease_expires_at = NULL, updated_at = ?2, \
               finished_at = CASE WHEN json_extract(v.value, '$.terminal') THEN ?2 ELSE NULL END \
             FROM json_each(?1) v WHERE tasks.id = json_extract(v.value, '$.id')",
        )
        .bind(&batch)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE task_attempts SET outcome = json_extract(v.value, '$.outcome'), \
               error = json_extract(v.value, '$.attempt_error'), \
               finished_at = COALESCE(json_extract(v.value, '$.finished_at'), ?2), \
               started_at = COALESCE(json_extract(v.value, '$.started_at'), started_at) \
             FROM json_each(?1) v \
             WHERE task_attempts.task_id = json_extract(v.value, '$.id') \
               AND task_attempts.lease_token = json_extract(v.value, '$.lease_token')",
        )
        .bind(&batch)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO task_events (task_id, at, kind, status, agent_id, detail) \
             SELECT json_extract(value, '$.id'), ?2, json_extract(value, '$.event'), json_extract(value, '$.status'), \
                    json_extract(value, '$.agent_id'), json_extract(value, '$.error') FROM json_each(?1)",
        )
        .bind(&batch)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        Ok((
            completed,
            super::freed_slots(rows.iter().filter_map(|r| r.agent_id)),
        ))
    }

    async fn event(
        tx: &mut Transaction<'_, Sqlite>,
        task_id: i64,
        at: i64,
        kind: &str,
        status: TaskStatus,
        agent_id: Option<i64>,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO task_events (task_id, at, kind, status, agent_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .bind(task_id)
            .bind(at)
            .bind(kind)
            .bind(status.as_str())
            .bind(agent_id)
            .bind(detail)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Ends the attempts of the running tasks `rows` (id, lease_token, started_at, timeout_ms)
    /// with `lost` unless they ran past their timeout.
    async fn sweep_running(
        tx: &mut Transaction<'_, Sqlite>,
        rows: Vec<sqlx::sqlite::SqliteRow>,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Sweep> {
        let mut endings = Vec::with_capacity(rows.len());
        for row in rows {
            endings.push(super::ending_of_sweep(
                row.try_get("id")?,
                row.try_get("lease_token")?,
                row.try_get("started_at")?,
                row.try_get("timeout_ms")?,
                why,
                now_us,
            ));
        }
        let ended = Self::end_attempts(tx, &endings, now_us).await?;
        Ok(super::sweep_of(ended))
    }

    /// Ends the running attempts of one agent (see [`Self::sweep_running`]).
    async fn sweep_agent(
        tx: &mut Transaction<'_, Sqlite>,
        agent_id: i64,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Sweep> {
        let rows = sqlx::query(
            "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND agent_id = ?1",
        )
        .bind(agent_id)
        .fetch_all(&mut **tx)
        .await?;
        Self::sweep_running(tx, rows, why, now_us).await
    }

    /// Moves an agent out of service with `update` (which binds the id and
    /// returns it) and sweeps what it held, in one transaction; `None` if
    /// there is no such agent.
    async fn retire_agent(
        &self,
        agent_id: i64,
        update: &str,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Option<Sweep>> {
        let mut tx = self.writer.begin().await?;
        let found: Option<i64> = sqlx::query_scalar(update)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(None);
        }
        let sweep = Self::sweep_agent(&mut tx, agent_id, why, now_us).await?;
        tx.commit().await?;
        Ok(Some(sweep))
    }
}

impl QueueStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn submit(
        &self,
        specs: &[TaskSpec],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<SubmittedTask>> {
        if specs.is_empty() {
            return Ok(vec![]);
        }
        let mut tx = self.writer.begin().await?;
        // Ids are assigned here (this connection is the only writer), so each
        // input maps to its row whatever an idempotency key skips.
        let base: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let ids: Vec<i64> = (1..=specs.len() as i64).map(|i| base + i).collect();
        let mut rows = Vec::with_capacity(specs.len());
        for (spec, id) in specs.iter().zip(&ids) {
            rows.push(serde_json::json!({
                "id": id,
                "task_type": spec.task_type,
                "payload": spec.payload.to_string(),
                "urgency": spec.urgency,
                "time_sensitivity": spec.time_sensitivity,
                "importance": spec.importance,
                "priority": spec.priority,
                "rank": sched.rank(spec.priority, now_us),
                "max_attempts": spec.max_attempts,
                "timeout_ms": spec.timeout_ms,
                "retry_backoff_ms": spec.retry_backoff_ms,
                "required_labels": serde_json::to_string(&spec.required_labels)?,
                "idempotency_key": spec.idempotency_key,
                "run_after": spec.run_after_us.unwrap_or(now_us),
            }));
        }
        let inserted: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO tasks (id, task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, \
               max_attempts, timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at) \
             SELECT json_extract(value, '$.id'), json_extract(value, '$.task_type'), json_extract(value, '$.payload'), \
               json_extract(value, '$.urgency'), json_extract(value, '$.time_sensitivity'), json_extract(value, '$.importance'), \
               json_extract(value, '$.priority'), json_extract(value, '$.rank'), 'queued', json_extract(value, '$.max_attempts'), \
               json_extract(value, '$.timeout_ms'), json_extract(value, '$.retry_backoff_ms'), json_extract(value, '$.required_labels'), \
               json_extract(value, '$.idempotency_key'), json_extract(value, '$.run_after'), ?2, ?2 \
             FROM json_each(?1) WHERE true ORDER BY key \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now_us)
        .fetch_all(&mut *tx)
        .await?;
        let inserted: std::collections::HashSet<i64> = inserted.into_iter().collect();
        let mut out = Vec::with_capacity(specs.len());
        for (spec, id) in specs.iter().zip(&ids) {
            if inserted.contains(id) {
                out.push(SubmittedTask {
                    id: *id,
                    status: TaskStatus::Queued,
                    priority: spec.priority,
                    created: true,
                });
                continue;
            }
            let row =
                sqlx::query("SELECT id, status, priority FROM tasks WHERE idempotency_key = ?1")
                    .bind(&spec.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
            out.push(SubmittedTask {
                id: row.try_get("id")?,
                status: super::rows::task_status(&row.try_get::<String, _>("status")?)?,
                priority: row.try_get("priority")?,
                created: false,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn claim(
        &self,
        agent_id: i64,
        max_tasks: i64,
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Claim> {
        let mut tx = self.writer.begin().await?;
        let claim = Self::claim_in(&mut tx, agent_id, max_tasks, now_us, lease_ttl_us).await?;
        tx.commit().await?;
        Ok(claim)
    }

    async fn claim_group(
        &self,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>> {
        // One transaction, so the group takes the single writer once. The
        // agents are served in order of their load now (ties in the order
        // given). Once an agent is left with free slots the queue holds
        // nothing more for the group, and the rest are answered without a
        // query: no tasks, their own counts, and told to drain if they are
        // not online (an agent that is gone is still told to drain).
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> = agents.iter().map(|&(id, _)| id).collect();
        // Per agent: (running, capacity, online).
        let mut known: HashMap<i64, (i64, i64, bool)> = sqlx::query(
            "SELECT id, running, capacity, status FROM agents WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(&ids)?)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let status: String = r.try_get("status")?;
            Ok((
                r.try_get("id")?,
                (
                    r.try_get("running")?,
                    r.try_get("capacity")?,
                    status == AgentStatus::Online.as_str(),
                ),
            ))
        })
        .collect::<Result<_>>()?;
        let load = |i: usize| {
            known
                .get(&agents[i].0)
                .map_or(f64::MAX, |&(running, capacity, _)| {
                    super::rows::load(running, capacity)
                })
        };
        let mut order: Vec<usize> = (0..agents.len()).collect();
        order.sort_by(|&a, &b| load(a).total_cmp(&load(b)).then(a.cmp(&b)));
        let mut claims = vec![Claim::default(); agents.len()];
        let mut exhausted = false;
        for i in order {
            let (agent_id, max_tasks) = agents[i];
            if exhausted {
                if let Some(&(running, capacity, online)) = known.get(&agent_id) {
                    claims[i] = Claim {
                        tasks: vec![],
                        running,
                        capacity,
                        drain: !online,
                    };
                    continue;
                }
            }
            let claim = Self::claim_in(&mut tx, agent_id, max_tasks, now_us, lease_ttl_us).await?;
            // An agent that is draining (or gone) got nothing whatever the queue holds.
            exhausted |= !claim.drain
                && (claim.tasks.len() as i64) < max_tasks
                && claim.running < claim.capacity;
            if let Some(k) = known.get_mut(&agent_id) {
                k.0 = claim.running;
            }
            claims[i] = claim;
        }
        tx.commit().await?;
        Ok(claims)
    }

    async fn complete(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        now_us: i64,
    ) -> Result<Completed> {
        let endings: Vec<Ending> = results
            .iter()
            .map(|r| super::ending_of_result(agent_id, r))
            .collect();
        let mut tx = self.writer.begin().await?;
        let completed = Self::end_attempts(&mut tx, &endings, now_us).await?;
        tx.commit().await?;
        Ok(completed)
    }

    async fn heartbeat(
        &self,
        agent_id: i64,
        running: &[Lease],
        now_us: i64,
        lease_ttl_us: i64,
        renew_below_us: i64,
    ) -> Result<HeartbeatResponse> {
        let mut tx = self.writer.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE agents SET last_heartbeat_at = ?1, \
             status = CASE WHEN status = 'offline' THEN 'online' ELSE status END \
             WHERE id = ?2 RETURNING status",
        )
        .bind(now_us)
        .bind(agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        // Which leases are still this agent's, then a renewal of only those
        // running low (see `QueueStore::heartbeat`): two statements however
        // many tasks the agent runs. CROSS JOIN keeps SQLite on the leases
        // (looked up by task id) rather than walking every running task.
        let leases: Vec<[i64; 2]> = running.iter().map(|l| [l.task_id, l.lease_token]).collect();
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT t.id FROM json_each(?1) v CROSS JOIN tasks t ON t.id = json_extract(v.value, '$[0]') \
             WHERE t.lease_token = json_extract(v.value, '$[1]') AND t.status = 'running' AND t.agent_id = ?2",
        )
        .bind(serde_json::to_string(&leases)?)
        .bind(agent_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tasks SET lease_expires_at = MIN(?1 + ?2, started_at + timeout_ms * 1000) \
             WHERE id IN (SELECT value FROM json_each(?3)) AND status = 'running' \
               AND lease_expires_at < MIN(?1 + ?4, started_at + timeout_ms * 1000)",
        )
        .bind(now_us)
        .bind(lease_ttl_us)
        .bind(serde_json::to_string(&held)?)
        .bind(renew_below_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let held: HashSet<i64> = held.into_iter().collect();
        let cancel = running
            .iter()
            .map(|l| l.task_id)
            .filter(|id| !held.contains(id))
            .collect();
        Ok(HeartbeatResponse {
            cancel,
            drain: status.as_deref() != Some(AgentStatus::Online.as_str()),
        })
    }

    async fn register_agent(&self, reg: &Registration<'_>, now_us: i64) -> Result<Registered> {
        let spec = reg.spec;
        let task_types = serde_json::to_string(&spec.task_types)?;
        let labels = serde_json::to_string(&spec.labels)?;
        let mut tx = self.writer.begin().await?;
        let resumed: Option<i64> = match reg.key_hash {
            Some(key) => {
                sqlx::query_scalar(
                    "UPDATE agents SET name = ?1, hostname = ?2, version = ?3, task_types = ?4, labels = ?5, \
                     capacity = ?6, status = CASE WHEN status = 'draining' THEN 'draining' ELSE 'online' END, token_hash = ?7, enrollment_id = ?8, last_heartbeat_at = ?9 \
                     WHERE key_hash = ?10 AND status <> 'revoked' RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.hostname)
                .bind(&spec.version)
                .bind(&task_types)
                .bind(&labels)
                .bind(spec.capacity)
                .bind(reg.session_hash)
                .bind(reg.enrollment_id)
                .bind(now_us)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let registered = match resumed {
            Some(agent_id) => {
                let keep: Vec<[i64; 2]> = reg
                    .resuming
                    .iter()
                    .map(|l| [l.task_id, l.lease_token])
                    .collect();
                let rows = sqlx::query(
                    "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND agent_id = ?1 \
                     AND NOT EXISTS (SELECT 1 FROM json_each(?2) v \
                       WHERE json_extract(v.value, '$[0]') = tasks.id AND json_extract(v.value, '$[1]') = tasks.lease_token)",
                )
                .bind(agent_id)
                .bind(serde_json::to_string(&keep)?)
                .fetch_all(&mut *tx)
                .await?;
                let sweep =
                    Self::sweep_running(&mut tx, rows, SweptBecause::Restarted, now_us).await?;
                Registered {
                    agent_id,
                    resumed: true,
                    sweep,
                }
            }
            None => {
                // The key of a revoked agent stays refused: the host must
                // be enrolled afresh (with a new key) to come back.
                if let Some(key) = reg.key_hash {
                    let revoked: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM agents WHERE key_hash = ?1 AND status = 'revoked'",
                    )
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(id) = revoked {
                        return Err(super::revoked_key(id));
                    }
                }
                let agent_id: i64 = sqlx::query_scalar(
                    "INSERT INTO agents (name, hostname, version, task_types, labels, capacity, running, status, token_hash, \
                     registered_at, last_heartbeat_at, key_hash, enrollment_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 'online', ?7, ?8, ?8, ?9, ?10) RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.hostname)
                .bind(&spec.version)
                .bind(&task_types)
                .bind(&labels)
                .bind(spec.capacity)
                .bind(reg.session_hash)
                .bind(now_us)
                .bind(reg.key_hash)
                .bind(reg.enrollment_id)
                .fetch_one(&mut *tx)
                .await?;
                Registered {
                    agent_id,
                    ..Registered::default()
                }
            }
        };
        tx.commit().await?;
        Ok(registered)
    }

    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentSession>> {
        let row = sqlx::query(
            // A session whose enrollment token was revoked is refused even
            // if the agent registered as the token was being revoked.
            "SELECT id, name, status, capacity, running, task_types, labels FROM agents WHERE token_hash = ?1 \
             AND NOT EXISTS (SELECT 1 FROM enrollment_tokens e WHERE e.id = agents.enrollment_id AND e.revoked_at IS NOT NULL)",
        )
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(AgentSession {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                status: super::rows::agent_status(&row.try_get::<String, _>("status")?)?,
                capacity: row.try_get("capacity")?,
                running: row.try_get("running")?,
                task_types: serde_json::from_str(&row.try_get::<String, _>("task_types")?)?,
                labels: serde_json::from_str(&row.try_get::<String, _>("labels")?)?,
            })
        })
        .transpose()
    }

    async fn deregister_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        let sweep = self
            .retire_agent(
                agent_id,
                "UPDATE agents SET status = 'deregistered' WHERE id = ?1 RETURNING id",
                SweptBecause::Deregistered,
                now_us,
            )
            .await?;
        Ok(sweep.unwrap_or_default())
    }

    async fn revoke_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        self.retire_agent(
            agent_id,
            "UPDATE agents SET status = 'revoked' WHERE id = ?1 RETURNING id",
            SweptBecause::Revoked,
            now_us,
        )
        .await?
        .ok_or(StoreError::NotFound)
    }

    async fn set_agent_draining(&self, agent_id: i64, draining: bool) -> Result<()> {
        let (from, to) = if draining {
            ("online", "draining")
        } else {
            ("draining", "online")
        };
        let done =
            sqlx::query("UPDATE agents SET status = ?1 WHERE id = ?2 AND status IN (?1, ?3)")
                .bind(to)
                .bind(agent_id)
                .bind(from)
                .execute(&self.writer)
                .await?
                .rows_affected();
        if done == 0 {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT status FROM agents WHERE id = ?1")
                    .bind(agent_id)
                    .fetch_optional(&self.writer)
                    .await?;
            return Err(match exists {
                None => StoreError::NotFound,
                Some(s) => StoreError::Conflict(format!("agent is {s}")),
            });
        }
        Ok(())
    }

    async fn list_agents(&self) -> Result<Vec<AgentView>> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY status IN ('deregistered', 'revoked'), status = 'offline', name, id"
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|row| Ok(agent_view!(row))).collect()
    }

    async fn get_task(&self, id: i64) -> Result<Option<TaskDetail>> {
        let mut conn = self.reader.acquire().await?;
        let Some(row) = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT * FROM task_attempts WHERE task_id = ?1 ORDER BY claimed_at, attempt",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let events = sqlx::query("SELECT * FROM task_events WHERE task_id = ?1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        Ok(Some(task_detail!(row, attempts, events)))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskView>> {
        let order = if filter.status == Some(TaskStatus::Queued) {
            "rank DESC, id"
        } else {
            "id DESC"
        };
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR task_type = ?2) \
             AND (?3 IS NULL OR agent_id = ?3) AND (?4 IS NULL OR id < ?4) ORDER BY {order} LIMIT ?5"
        ))
        .bind(filter.status.map(TaskStatus::as_str))
        .bind(&filter.task_type)
        .bind(filter.agent_id)
        .bind(filter.before_id)
        .bind(filter.limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|row| Ok(task_view!(row))).collect()
    }

    async fn cancel_task(&self, id: i64, now_us: i64) -> Result<TaskStatus> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT status, lease_token FROM tasks WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let status = super::rows::task_status(&row.try_get::<String, _>("status")?)?;
        match status {
            TaskStatus::Queued => {
                sqlx::query("UPDATE tasks SET status = 'cancelled', updated_at = ?1, finished_at = ?1 WHERE id = ?2")
                    .bind(now_us)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                Self::event(
                    &mut tx,
                    id,
                    now_us,
                    "cancelled",
                    TaskStatus::Cancelled,
                    None,
                    None,
                )
                .await?;
            }
            TaskStatus::Running => {
                let ending = Ending {
                    task_id: id,
                    lease_token: row.try_get("lease_token")?,
                    holder: None,
                    end: AttemptEnd::Cancelled,
                    started_at_us: None,
                    finished_at_us: None,
                };
                Self::end_attempts(&mut tx, &[ending], now_us).await?;
            }
            done => {
                return Err(StoreError::Conflict(format!(
                    "task already {}",
                    done.as_str()
                )))
            }
        }
        tx.commit().await?;
        Ok(TaskStatus::Cancelled)
    }

    async fn stats(&self) -> Result<Stats> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
            .fetch_all(&self.reader)
            .await?;
        let agents_online: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agents WHERE status IN ('online', 'draining')",
        )
        .fetch_one(&self.reader)
        .await?;
        super::stats_of(
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("status")?, r.try_get::<i64, _>("n")?))),
            agents_online,
        )
    }

    async fn known_task_types(&self) -> Result<Vec<String>> {
        let types: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT j.value FROM agents, json_each(agents.task_types) j ORDER BY 1",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(types)
    }

    async fn next_run_after(&self, now_us: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(run_after) FROM tasks WHERE status = 'queued' AND run_after > ?1",
        )
        .bind(now_us)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn mark_silent_agents_offline(&self, silent_since_us: i64, now_us: i64) -> Result<Sweep> {
        let mut tx = self.writer.begin().await?;
        let agents: Vec<i64> = sqlx::query_scalar(
            "UPDATE agents SET status = 'offline' WHERE status IN ('online', 'draining') AND last_heartbeat_at < ?1 RETURNING id",
        )
        .bind(silent_since_us)
        .fetch_all(&mut *tx)
        .await?;
        let mut sweep = Sweep::default();
        for &agent in &agents {
            sweep.add(Self::sweep_agent(&mut tx, agent, SweptBecause::Offline, now_us).await?);
        }
        tx.commit().await?;
        sweep.agents_offline = agents;
        Ok(sweep)
    }

    async fn expire_leases(&self, now_us: i64) -> Result<Sweep> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND lease_expires_at <= ?1",
        )
        .bind(now_us)
        .fetch_all(&mut *tx)
        .await?;
        let sweep = if rows.is_empty() {
            Sweep::default()
        } else {
            Self::sweep_running(&mut tx, rows, SweptBecause::LeaseExpired, now_us).await?
        };
        tx.commit().await?;
        Ok(sweep)
    }

    async fn try_lead(&self, name: &str, holder: &str, now_us: i64, ttl_us: i64) -> Result<bool> {
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO leadership (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leadership.holder = excluded.holder OR leadership.expires_at < ?4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_us + ttl_us)
        .bind(now_us)
        .fetch_optional(&self.writer)
        .await?;
        Ok(held.is_some())
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leadership WHERE name = ?1 AND holder = ?2")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
