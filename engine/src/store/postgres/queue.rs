//! The queue on PostgreSQL: submitting, reading and cancelling tasks,
//! counts, leadership. Claims, heartbeats, agents and results have their
//! own files; the trait's methods for them forward there.

use drover_protocol::agent::{HeartbeatResponse, Lease, TaskResult};
use drover_protocol::api::{AgentView, Stats, SubmittedTask, TaskDetail, TaskStatus, TaskView};
use sqlx::Row;

use super::{lists, PgStore};
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::lifecycle::AttemptEnd;
use crate::store::rows::{task_detail, task_view};
use crate::store::sql;
use crate::store::sql::task_list;
use crate::store::{
    AgentSession, Claim, Completed, Ending, ListCount, QueueStore, Registered, Registration,
    Result, Sweep, SweptBecause, TaskFilter,
};

/// A task's columns as `TaskView` decodes them (labels as JSON text).
const TASK_COLUMNS: &str = "id, task_type, payload, urgency, time_sensitivity, importance, priority, \
    status, attempts, max_attempts, timeout_ms, retry_backoff_ms, array_to_json(required_labels)::text AS required_labels, \
    idempotency_key, result, error, agent_id, lease_token, run_after, created_at, updated_at, started_at, finished_at, claim_load, \
    concurrency_key, concurrency_limit, held, run_id, step_id";

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
        self.submits
            .run(super::submit::Rows(crate::store::plan::TaskRow::all(
                specs, sched, now_us,
            )?))
            .await
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
        let (statement, binds) = task_list::page(filter, &lists::SEARCH, TASK_COLUMNS);
        let rows = lists::bind_all(sqlx::query(&statement), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(task_view!(row))).collect()
    }

    async fn count_tasks(&self, filter: &TaskFilter) -> Result<ListCount> {
        if let Some(total) = filter.total_from(&self.stats().await?) {
            return Ok(ListCount { total, more: false });
        }
        lists::count(&self.pool, task_list::count(filter, &lists::SEARCH)).await
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
        self.counted_stats().await
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
