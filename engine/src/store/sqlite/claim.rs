//! Claims and heartbeats on SQLite: the single writer makes a claim a
//! plain `UPDATE … RETURNING` that no other claim can race.

use std::collections::HashSet;

use drover_protocol::agent::{HeartbeatResponse, Lease};
use drover_protocol::api::AgentStatus;

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
        self.hot
            .run(move |conn| super::hot::claim(conn, agent_id, max_tasks, now_us, lease_ttl_us))
            .await
    }

    pub(super) async fn claim_for_group(
        &self,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>> {
        let agents = agents.to_vec();
        self.hot
            .run(move |conn| super::hot::claim_group(conn, &agents, now_us, lease_ttl_us))
            .await
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
}
