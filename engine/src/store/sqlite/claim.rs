//! Claims and heartbeats on SQLite: the single writer makes a claim a
//! plain `UPDATE … RETURNING` that no other claim can race.

use std::collections::{HashMap, HashSet};

use drover_protocol::agent::{HeartbeatResponse, Lease};
use drover_protocol::api::AgentStatus;
use sqlx::{Row, Sqlite, Transaction};

use crate::store::rows::assignment;
use crate::store::{Claim, Result};

use super::SqliteStore;

impl SqliteStore {
    pub(super) async fn claim_for_agent(
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

    pub(super) async fn claim_for_group(
        &self,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>> {
        // One transaction, so the group takes the single writer once. The
        // agents are served in order of their load now (ties in the order
        // given). Once an agent is left with free slots the queue holds
        // nothing more for the group, and the rest are answered empty
        // without a query (an agent that is gone is still told to drain).
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> = agents.iter().map(|&(id, _)| id).collect();
        let load: HashMap<i64, f64> = sqlx::query(
            "SELECT id, running, capacity FROM agents WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(&ids)?)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                crate::store::rows::load(r.try_get("running")?, r.try_get("capacity")?),
            ))
        })
        .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..agents.len()).collect();
        order.sort_by(|&a, &b| {
            let of = |i: usize| load.get(&agents[i].0).copied().unwrap_or(f64::MAX);
            of(a).total_cmp(&of(b)).then(a.cmp(&b))
        });
        let mut claims = vec![Claim::default(); agents.len()];
        let mut exhausted = false;
        for i in order {
            let (agent_id, max_tasks) = agents[i];
            if exhausted && load.contains_key(&agent_id) {
                continue;
            }
            let claim = Self::claim_in(&mut tx, agent_id, max_tasks, now_us, lease_ttl_us).await?;
            // An agent that is draining (or gone) got nothing whatever the queue holds.
            exhausted |= !claim.drain
                && (claim.tasks.len() as i64) < max_tasks
                && claim.running < claim.capacity;
            claims[i] = claim;
        }
        tx.commit().await?;
        Ok(claims)
    }

    pub(super) async fn renew_leases(
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
             status = CASE WHEN status = 'offline' THEN (CASE WHEN drained THEN 'draining' ELSE 'online' END) ELSE status END \
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

    /// One agent's claim inside `tx` (see `QueueStore::claim`).
    pub(super) async fn claim_in(
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
        let agent_load = crate::store::rows::load(running, capacity);
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
}
