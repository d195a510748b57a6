//! Claims and heartbeats on PostgreSQL: a claim is one statement whose
//! CTEs pick the tasks (`FOR UPDATE SKIP LOCKED`), write the attempts and
//! events and the agent's running count.

use std::collections::HashSet;

use drover_protocol::agent::{HeartbeatResponse, Lease};
use drover_protocol::api::AgentStatus;
use sqlx::Row;

use super::PgStore;
use crate::store::rows::assignment;
use crate::store::{Claim, QueueStore, Result};

impl PgStore {
    pub(super) async fn claim_for_agent(
        &self,
        agent_id: i64,
        max_tasks: i64,
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Claim> {
        let mut claims = self
            .claim_group(&[(agent_id, max_tasks)], now_us, lease_ttl_us)
            .await?;
        Ok(claims.pop().unwrap_or_default())
    }

    pub(super) async fn claim_for_group(
        &self,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>> {
        Self::claim_group_on(&self.claims, agents, now_us, lease_ttl_us).await
    }

    /// [`claim_for_group`](Self::claim_for_group) on `executor`: the claim
    /// pool, or a results transaction that refills the slots it frees.
    pub(super) async fn claim_group_on(
        executor: impl sqlx::PgExecutor<'_>,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>> {
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        // An agent listed twice is claimed for once (the first time).
        let mut seen = std::collections::HashSet::new();
        let (ids, wants): (Vec<i64>, Vec<i64>) = agents
            .iter()
            .copied()
            .filter(|(id, _)| seen.insert(*id))
            .unzip();
        // One statement for the whole group, so one round trip and no
        // explicit transaction. The rows of the agents with a free slot are
        // locked in id order (two instances claiming for overlapping groups
        // cannot deadlock); a full agent's row is only read, so recording
        // its results (which frees its slots) does not wait for claims. Each
        // gets a range of slots (M - C, at most what it asked for) in order
        // of its load now (ties in the order given); the best-ranked queued tasks are
        // numbered and task n goes to the agent whose range holds n. The
        // tasks, their attempts and events and the agents' new C are written
        // together, and every agent's row comes back, with or without tasks.
        // With nothing queued for the group no agent row is locked: a claim
        // that finds nothing (most rounds that a re-parked claim starts) then
        // writes nothing, so it neither waits for a WAL flush at commit nor
        // holds up a results transaction giving an agent its slots back.
        // Whether anything is queued for the group is the first task in
        // claim order (`tasks_claim`), not an EXISTS: the planner ran an
        // EXISTS as a scan of the table from its start, where the finished
        // history lies (48 ms a claim with ten million finished tasks).
        let rows = sqlx::query(
            "WITH req AS ( \
               SELECT * FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS r(agent_id, max_tasks, ord)), \
             info AS ( \
               SELECT a.id, a.capacity, a.running, a.status, a.task_types, a.labels, req.ord \
               FROM agents a JOIN req ON a.id = req.agent_id), \
             kind AS (SELECT task_types, labels FROM info ORDER BY ord LIMIT 1), \
             ag AS ( \
               SELECT a.id, a.capacity, a.running, a.status, req.ord, \
                 GREATEST(LEAST(req.max_tasks, a.capacity - a.running), 0) AS want, \
                 CASE WHEN a.capacity > 0 THEN a.running::float8 / a.capacity ELSE 1.0 END AS load \
               FROM agents a JOIN req ON a.id = req.agent_id \
               WHERE a.status = 'online' AND a.running < a.capacity \
                 AND (SELECT t.id FROM tasks t, kind WHERE t.status = 'queued' AND t.held = 0 AND t.run_after <= $3 \
                   AND t.task_type = ANY(kind.task_types) AND t.required_labels <@ kind.labels \
                   ORDER BY t.rank DESC, t.id LIMIT 1) IS NOT NULL \
               ORDER BY a.id FOR UPDATE OF a), \
             slots AS ( \
               SELECT id, load, sum(want) OVER (ORDER BY load, ord) - want AS lo, sum(want) OVER (ORDER BY load, ord) AS hi FROM ag), \
             picked AS ( \
               SELECT t.id, t.rank FROM tasks t, kind \
               WHERE t.status = 'queued' AND t.held = 0 AND t.run_after <= $3 \
                 AND t.task_type = ANY(kind.task_types) AND t.required_labels <@ kind.labels \
               ORDER BY t.rank DESC, t.id LIMIT (SELECT COALESCE(sum(want), 0)::bigint FROM ag) \
               FOR UPDATE OF t SKIP LOCKED), \
             assigned AS ( \
               SELECT p.id, s.id AS agent_id, s.load FROM \
                 (SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS n FROM picked) p \
               JOIN slots s ON p.n > s.lo AND p.n <= s.hi), \
             claimed AS ( \
               UPDATE tasks t SET status = 'running', attempts = t.attempts + 1, claims = t.claims + 1, \
                 lease_token = drover_lease_token(), agent_id = a.agent_id, claim_load = a.load, started_at = $3, updated_at = $3, \
                 lease_expires_at = LEAST($3 + $4, $3 + t.timeout_ms * 1000) \
               FROM assigned a WHERE t.id = a.id \
               RETURNING t.id, t.agent_id, t.claim_load, t.lease_token, t.task_type, t.payload, t.attempts, \
                 t.max_attempts, t.timeout_ms, t.priority, t.rank), \
             att AS (INSERT INTO task_attempts (task_id, lease_token, attempt, agent_id, agent_load, claimed_at, outcome) \
               SELECT id, lease_token, attempts, agent_id, claim_load, $3, 'running' FROM claimed), \
             bump AS (UPDATE agents a SET running = a.running + c.n \
               FROM (SELECT agent_id, count(*) AS n FROM claimed GROUP BY agent_id) c WHERE a.id = c.agent_id) \
             SELECT i.id AS claim_agent, COALESCE(ag.capacity, i.capacity) AS capacity, \
               COALESCE(ag.running, i.running) AS running, COALESCE(ag.status, i.status) AS status, c.* \
             FROM info i LEFT JOIN ag ON ag.id = i.id LEFT JOIN claimed c ON c.agent_id = i.id \
             ORDER BY i.ord, c.rank DESC, c.id",
        )
        .bind(&ids)
        .bind(&wants)
        .bind(now_us)
        .bind(lease_ttl_us)
        .fetch_all(executor)
        .await?;
        // An agent missing from the rows is gone: it gets nothing and drains.
        let mut claims: Vec<Claim> = vec![
            Claim {
                drain: true,
                ..Claim::default()
            };
            ids.len()
        ];
        let slot_of: std::collections::HashMap<i64, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        for row in &rows {
            let agent: i64 = row.try_get("claim_agent")?;
            let Some(&i) = slot_of.get(&agent) else {
                continue;
            };
            let claim = &mut claims[i];
            if row.try_get::<Option<i64>, _>("id")?.is_some() {
                claim.tasks.push(assignment!(row));
            }
            claim.capacity = row.try_get("capacity")?;
            let running: i64 = row.try_get("running")?;
            claim.running = running + claim.tasks.len() as i64;
            claim.drain = row.try_get::<String, _>("status")? != AgentStatus::Online.as_str();
        }
        // Back in the order asked, a repeated agent answered empty.
        let mut claims = claims.into_iter();
        let mut answered = std::collections::HashSet::new();
        Ok(agents
            .iter()
            .map(|(id, _)| {
                if answered.insert(*id) {
                    claims.next().unwrap_or_default()
                } else {
                    Claim::default()
                }
            })
            .collect())
    }

    pub(super) async fn renew_leases(
        &self,
        agent_id: i64,
        running: &[Lease],
        now_us: i64,
        lease_ttl_us: i64,
        renew_below_us: i64,
    ) -> Result<HeartbeatResponse> {
        let mut tx = self.pool.begin().await?;
        // The task rows first, in id order, then the agent's row: the order
        // in which `complete` locks them. In the other order a heartbeat and
        // a results batch of the same agent deadlock, and PostgreSQL breaks
        // the tie only after `deadlock_timeout` (a second), failing one.
        let ids: Vec<i64> = running.iter().map(|l| l.task_id).collect();
        let tokens: Vec<i64> = running.iter().map(|l| l.lease_token).collect();
        // Only the leases running low are renewed and locked (see
        // `QueueStore::heartbeat`); the others are only read. A row locked
        // by a results batch meanwhile is checked again once it is free
        // (still running, still this agent's, same lease) before renewal.
        let extended: Vec<i64> = sqlx::query_scalar(
            "WITH held AS ( \
               SELECT t.id, t.lease_token, t.lease_expires_at, LEAST($1 + $2, t.started_at + t.timeout_ms * 1000) AS until \
               FROM tasks t JOIN unnest($3::bigint[], $4::bigint[]) AS v(id, lease_token) \
                 ON t.id = v.id AND t.lease_token = v.lease_token \
               WHERE t.id = ANY($3) AND t.status = 'running' AND t.agent_id = $5), \
             due AS ( \
               SELECT t.id, held.until FROM tasks t JOIN held ON t.id = held.id \
               WHERE t.id = ANY($3) AND t.status = 'running' AND t.agent_id = $5 AND t.lease_token = held.lease_token \
                 AND held.lease_expires_at < LEAST($1 + $6, held.until) \
               ORDER BY t.id FOR UPDATE OF t), \
             renewed AS ( \
               UPDATE tasks t SET lease_expires_at = due.until FROM due WHERE t.id = due.id) \
             SELECT id FROM held",
        )
        .bind(now_us)
        .bind(lease_ttl_us)
        .bind(&ids)
        .bind(&tokens)
        .bind(agent_id)
        .bind(renew_below_us)
        .fetch_all(&mut *tx)
        .await?;
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE agents SET last_heartbeat_at = $1, \
             status = CASE WHEN status = 'offline' THEN (CASE WHEN drained THEN 'draining' ELSE 'online' END) ELSE status END \
             WHERE id = $2 RETURNING status",
        )
        .bind(now_us)
        .bind(agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let extended: HashSet<i64> = extended.into_iter().collect();
        Ok(HeartbeatResponse {
            cancel: ids
                .into_iter()
                .filter(|id| !extended.contains(id))
                .collect(),
            drain: status.as_deref() != Some(AgentStatus::Online.as_str()),
        })
    }
}
