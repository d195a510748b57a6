//! The queue on PostgreSQL: submitting, reading and cancelling tasks,
//! counts, leadership. Claims, heartbeats, agents and results have their
//! own files; the trait's methods for them forward there.

use std::collections::HashSet;

use drover_protocol::agent::{HeartbeatResponse, Lease, TaskResult};
use drover_protocol::api::{AgentView, Stats, SubmittedTask, TaskDetail, TaskStatus, TaskView};
use sqlx::Row;

use super::PgStore;
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::lifecycle::AttemptEnd;
use crate::store::rows::{task_detail, task_view};
use crate::store::sql;
use crate::store::{
    AgentSession, Claim, Completed, Ending, QueueStore, Registered, Registration, Result, Sweep,
    SweptBecause, TaskFilter,
};

/// A task's columns as `TaskView` decodes them (labels as JSON text).
const TASK_COLUMNS: &str = "id, task_type, payload, urgency, time_sensitivity, importance, priority, \
    status, attempts, max_attempts, timeout_ms, retry_backoff_ms, array_to_json(required_labels)::text AS required_labels, \
    idempotency_key, result, error, agent_id, lease_token, run_after, created_at, updated_at, started_at, finished_at, claim_load";

impl QueueStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        let mut task_type = Vec::with_capacity(specs.len());
        let mut payload = Vec::with_capacity(specs.len());
        let (mut urgency, mut time_sensitivity, mut importance) = (vec![], vec![], vec![]);
        let (mut priority, mut rank) = (vec![], vec![]);
        let (mut max_attempts, mut timeout_ms, mut backoff) = (vec![], vec![], vec![]);
        let (mut labels, mut key, mut run_after) = (vec![], vec![], vec![]);
        for s in specs {
            task_type.push(s.task_type.clone());
            payload.push(s.payload.to_string());
            urgency.push(s.urgency);
            time_sensitivity.push(s.time_sensitivity);
            importance.push(s.importance);
            priority.push(s.priority);
            rank.push(sched.rank(s.priority, now_us));
            max_attempts.push(s.max_attempts);
            timeout_ms.push(s.timeout_ms);
            backoff.push(s.retry_backoff_ms);
            // Postgres arrays cannot nest, so labels travel as a JSON text per task.
            labels.push(serde_json::to_string(&s.required_labels)?);
            key.push(s.idempotency_key.clone());
            run_after.push(s.run_after_us.unwrap_or(now_us));
        }
        // One statement, committed on its own (one round trip): ids are
        // drawn per input in order (`ord`), so each input maps to its row
        // whatever an idempotency key skips.
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "WITH v AS ( \
               SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::float8[], \
                 $7::float8[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::bigint[]) \
                 WITH ORDINALITY AS v(task_type, payload, urgency, time_sensitivity, importance, priority, rank, \
                      max_attempts, timeout_ms, backoff, labels, key, run_after, ord)), \
             ids AS MATERIALIZED (SELECT ord, nextval('tasks_id_seq') AS id FROM v ORDER BY ord), \
             ins AS ( \
               INSERT INTO tasks (id, task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, \
                 max_attempts, timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at) \
               SELECT ids.id, v.task_type, v.payload, v.urgency, v.time_sensitivity, v.importance, v.priority, v.rank, 'queued', \
                 v.max_attempts, v.timeout_ms, v.backoff, \
                 ARRAY(SELECT json_array_elements_text(v.labels::json)), v.key, v.run_after, $14, $14 \
               FROM v JOIN ids USING (ord) \
               ORDER BY v.ord \
               ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id) \
             SELECT ids.id, ins.id IS NOT NULL FROM ids LEFT JOIN ins ON ins.id = ids.id ORDER BY ids.ord",
        )
        .bind(&task_type)
        .bind(&payload)
        .bind(&urgency)
        .bind(&time_sensitivity)
        .bind(&importance)
        .bind(&priority)
        .bind(&rank)
        .bind(&max_attempts)
        .bind(&timeout_ms)
        .bind(&backoff)
        .bind(&labels)
        .bind(&key)
        .bind(&run_after)
        .bind(now_us)
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|&(id, _)| id).collect();
        let inserted: Vec<i64> = rows
            .iter()
            .filter(|&&(_, inserted)| inserted)
            .map(|&(id, _)| id)
            .collect();
        let inserted: HashSet<i64> = inserted.into_iter().collect();
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
                sqlx::query("SELECT id, status, priority FROM tasks WHERE idempotency_key = $1")
                    .bind(&spec.idempotency_key)
                    .fetch_one(&self.pool)
                    .await?;
            out.push(SubmittedTask {
                id: row.try_get("id")?,
                status: crate::store::rows::task_status(&row.try_get::<String, _>("status")?)?,
                priority: row.try_get("priority")?,
                created: false,
            });
        }
        // After the commit, through the notifier: a notice inside the
        // transaction is one more round trip, and holds the database-wide
        // notify lock through the commit's flush.
        if !inserted.is_empty() {
            self.announce_work();
        }
        Ok(out)
    }

    async fn claim(
        &self,
        agent_id: i64,
        max_tasks: i64,
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Claim> {
        self.claim_for_agent(agent_id, max_tasks, now_us, lease_ttl_us)
            .await
    }

    async fn claim_group(
        &self,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>> {
        self.claim_for_group(agents, now_us, lease_ttl_us).await
    }

    async fn complete(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        now_us: i64,
    ) -> Result<Completed> {
        self.complete_results(agent_id, results, now_us).await
    }

    async fn heartbeat(
        &self,
        agent_id: i64,
        running: &[Lease],
        now_us: i64,
        lease_ttl_us: i64,
        renew_below_us: i64,
    ) -> Result<HeartbeatResponse> {
        self.renew_leases(agent_id, running, now_us, lease_ttl_us, renew_below_us)
            .await
    }

    async fn register_agent(&self, reg: &Registration<'_>, now_us: i64) -> Result<Registered> {
        self.register(reg, now_us).await
    }

    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentSession>> {
        self.session_by_token(token_hash).await
    }

    async fn deregister_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        self.deregister(agent_id, now_us).await
    }

    async fn revoke_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        self.revoke(agent_id, now_us).await
    }

    async fn set_agent_draining(&self, agent_id: i64, draining: bool) -> Result<()> {
        self.set_draining(agent_id, draining).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentView>> {
        self.agents_view().await
    }

    async fn get_task(&self, id: i64) -> Result<Option<TaskDetail>> {
        let Some(row) = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(sql::queue::ATTEMPTS_OF)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        let events = sqlx::query(sql::queue::EVENTS_OF)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(task_detail!(row, attempts, events)))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskView>> {
        let order = if filter.status == Some(TaskStatus::Queued) {
            "rank DESC, id"
        } else {
            "id DESC"
        };
        // The status is written into the statement (one of five fixed
        // words), not bound: only then can the planner of a prepared
        // statement use the partial index of that status.
        let status = match filter.status {
            Some(s) => format!("status = '{}'", s.as_str()),
            None => "true".to_string(),
        };
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {status} AND ($1::text IS NULL OR task_type = $1) \
             AND ($2::bigint IS NULL OR agent_id = $2) AND ($3::bigint IS NULL OR id < $3) ORDER BY {order} LIMIT $4"
        ))
        .bind(&filter.task_type)
        .bind(filter.agent_id)
        .bind(filter.before_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(task_view!(row))).collect()
    }

    async fn cancel_task(&self, id: i64, now_us: i64) -> Result<TaskStatus> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT status, lease_token FROM tasks WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        match crate::store::rows::task_status(&row.try_get::<String, _>("status")?)? {
            TaskStatus::Queued => {
                sqlx::query(
                    "WITH upd AS (UPDATE tasks SET status = 'cancelled', updated_at = $1, finished_at = $1 WHERE id = $2) \
                     INSERT INTO task_events (task_id, at, kind, status) VALUES ($2, $1, 'cancelled', 'cancelled')",
                )
                .bind(now_us)
                .bind(id)
                .execute(&mut *tx)
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
        let rows = sqlx::query("SELECT status, count(*) AS n FROM tasks GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let agents_online: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM agents WHERE status IN ('online', 'draining')",
        )
        .fetch_one(&self.pool)
        .await?;
        crate::store::stats_of(
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("status")?, r.try_get::<i64, _>("n")?))),
            agents_online,
        )
    }

    async fn known_task_types(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT unnest(task_types) AS t FROM agents ORDER BY t")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn next_run_after(&self, now_us: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT min(run_after) FROM tasks WHERE status = 'queued' AND run_after > created_at AND run_after > $1",
        )
        .bind(now_us)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn mark_silent_agents_offline(&self, silent_since_us: i64, now_us: i64) -> Result<Sweep> {
        self.mark_silent_offline(silent_since_us, now_us).await
    }

    async fn expire_leases(&self, now_us: i64) -> Result<Sweep> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(sql::queue::EXPIRED_LEASES)
            .bind(now_us)
            .fetch_all(&mut *tx)
            .await?;
        let sweep = Self::sweep_running(&mut tx, rows, SweptBecause::LeaseExpired, now_us).await?;
        tx.commit().await?;
        Ok(sweep)
    }

    async fn try_lead(&self, name: &str, holder: &str, now_us: i64, ttl_us: i64) -> Result<bool> {
        let held: Option<String> = sqlx::query_scalar(sql::queue::TRY_LEAD)
            .bind(name)
            .bind(holder)
            .bind(now_us + ttl_us)
            .bind(now_us)
            .fetch_optional(&self.pool)
            .await?;
        Ok(held.is_some())
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(sql::queue::RESIGN)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
