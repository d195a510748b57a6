//! PostgreSQL backend: any number of server instances share one database.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` so instances claim side by side
//! without waiting on each other or taking the same row. Because every
//! statement is a network round trip, multi-row work is one statement over
//! `unnest`ed arrays, and a claim is a single statement whose CTEs also write
//! the attempt rows, the events and the agent's running count. Changes that
//! make work claimable `NOTIFY drover_work`, so the dispatchers of the other
//! instances wake at once.

use std::collections::HashSet;
use std::time::Duration;

use drover_protocol::agent::{HeartbeatResponse, Lease, TaskResult};
use drover_protocol::api::{
    AgentStatus, AgentView, Stats, SubmittedTask, TaskDetail, TaskStatus, TaskView,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use std::str::FromStr;

use super::rows::{agent_view, assignment, current_leases, task_detail, task_view};
use super::{
    AgentSession, Claim, Completed, Ending, FreedSlots, QueueStore, Registered, Registration,
    Result, Sweep, SweptBecause, TaskFilter,
};
use crate::domain::{Scheduling, TaskSpec};
use crate::error::StoreError;
use crate::lifecycle::AttemptEnd;

/// The channel instances use to wake each other's dispatchers.
pub const WORK_CHANNEL: &str = "drover_work";

/// A random tag for this process, sent as the payload of its work
/// notifications (see `postgres_instance_tag`).
pub(super) fn instance_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

const TASK_COLUMNS: &str = "id, task_type, payload, urgency, time_sensitivity, importance, priority, \
    status, attempts, max_attempts, timeout_ms, retry_backoff_ms, array_to_json(required_labels)::text AS required_labels, \
    idempotency_key, result, error, agent_id, lease_token, run_after, created_at, updated_at, started_at, finished_at, claim_load";

const AGENT_COLUMNS: &str = "id, name, hostname, version, array_to_json(task_types)::text AS task_types, \
    array_to_json(labels)::text AS labels, capacity, running, status, registered_at, last_heartbeat_at";

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Claims only: connections with bitmap scans off (see [`Self::connect`]).
    claims: PgPool,
    notifier: super::Notifier,
}

/// Connections of the claim pool, on top of the main pool's: the
/// dispatcher's rounds and agents' claims that do not wait use it.
const CLAIM_CONNECTIONS: u32 = 4;

/// A pooled connection idle this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Options of both pools. By default sqlx pings every connection before
/// handing it out: one more round trip on the path of every transaction,
/// which on a busy machine costs a results batch more than its `BEGIN`. A
/// connection is already pinged when it goes back to the pool, so only one
/// that sat idle (across a database restart, say) is pinged again; one that
/// fails it is dropped and another is taken.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = pool_options(max_connections.max(2))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        // A claim must walk `tasks_claim` in rank order and stop at its
        // limit. Left to itself the planner often prefers a bitmap scan of a
        // partial index on `status = 'queued'` and a sort, which reads every
        // index entry of a task that was ever queued and not yet vacuumed:
        // at a thousand tasks a second that is tens of thousands of dead
        // entries a minute, read again by every claim (a plain index scan
        // marks them dead the first time and skips them after).
        let claims = pool_options(CLAIM_CONNECTIONS)
            .connect_lazy_with(options.options([("enable_bitmapscan", "off")]));
        let notifier = super::Notifier::start(pool.clone());
        Ok(Self {
            pool,
            claims,
            notifier,
        })
    }

    /// Sends this instance's notices to the others after commit (see
    /// `pg_notifier`).
    pub fn notifier(&self) -> &super::Notifier {
        &self.notifier
    }

    /// Tells the other instances, soon, that work became claimable: for
    /// changes already committed.
    pub(super) fn announce_work(&self) {
        self.notifier
            .notify(WORK_CHANNEL, instance_tag().to_string());
    }

    /// The pool, for `LISTEN` on [`WORK_CHANNEL`].
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Tells the other instances, at commit, that work became claimable.
    pub(super) async fn notify_work(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(WORK_CHANNEL)
            .bind(instance_tag())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Ends attempts whose lease is current (one locking read, one write
    /// statement for the whole batch, one for the agents' counts); stale
    /// ones change nothing.
    pub(super) async fn end_attempts(
        tx: &mut Transaction<'_, Postgres>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<Completed> {
        let (completed, freed) = Self::end_attempts_holding_slots(tx, endings, now_us).await?;
        Self::free_slots(tx, &freed).await?;
        Ok(completed)
    }

    /// Gives agents back the slots their ended attempts held (C -= n). Last
    /// in a transaction: an agent's row is what every claim for it locks,
    /// so the less time a transaction holds it, the less claims wait.
    pub(super) async fn free_slots(
        tx: &mut Transaction<'_, Postgres>,
        freed: &FreedSlots,
    ) -> Result<()> {
        if freed.is_empty() {
            return Ok(());
        }
        Self::lock_agents_in_order(tx, freed).await?;
        let (agents, counts): (Vec<i64>, Vec<i64>) = freed.iter().copied().unzip();
        // An agent that was full may have a claim parked on another
        // instance, which hears of the free slot only by a notification.
        sqlx::query(
            "WITH freed AS ( \
               UPDATE agents a SET running = GREATEST(a.running - f.n, 0) \
               FROM unnest($1::bigint[], $2::bigint[]) AS f(id, n) WHERE a.id = f.id AND a.id = ANY($1) \
               RETURNING a.running + f.n >= a.capacity AS was_full) \
             SELECT pg_notify($3, $4) FROM (SELECT 1 FROM freed WHERE was_full LIMIT 1) AS opened",
        )
        .bind(&agents)
        .bind(&counts)
        .bind(WORK_CHANNEL)
        .bind(instance_tag())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Locks the rows of the agents getting slots back in id order, as a
    /// group claim locks them: a batch freeing slots on several agents (a
    /// sweep) must not take them in another order and deadlock with a
    /// claim. One agent's row needs no lock ahead of its update.
    pub(super) async fn lock_agents_in_order(
        tx: &mut Transaction<'_, Postgres>,
        freed: &FreedSlots,
    ) -> Result<()> {
        if freed.len() > 1 {
            let agents: Vec<i64> = freed.iter().map(|(id, _)| *id).collect();
            sqlx::query("SELECT id FROM agents WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&agents)
                .fetch_all(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// [`end_attempts`](Self::end_attempts) without giving the agents their
    /// slots back: the caller does that with [`free_slots`](Self::free_slots)
    /// at the end of its transaction.
    pub(super) async fn end_attempts_holding_slots(
        tx: &mut Transaction<'_, Postgres>,
        endings: &[Ending],
        now_us: i64,
    ) -> Result<(Completed, FreedSlots)> {
        if endings.is_empty() {
            return Ok((Completed::default(), FreedSlots::default()));
        }
        let ids: Vec<i64> = endings.iter().map(|e| e.task_id).collect();
        // By id only (`= ANY`, an index probe whatever the statistics say;
        // a join on the leases was planned as a walk over every running
        // task while a new database had no statistics yet); which leases are
        // current is decided from the rows (`plan_endings`).
        let rows = sqlx::query(
            "SELECT t.id, t.lease_token, t.attempts, t.max_attempts, t.retry_backoff_ms, t.agent_id, t.run_id FROM tasks t \
             WHERE t.id = ANY($1) AND t.status = 'running' ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        let current = current_leases!(rows);
        let (completed, rows) = super::plan_endings(endings, &current, now_us);
        let cols: EndColumns = rows.into_iter().collect();
        if cols.id.is_empty() {
            return Ok((completed, FreedSlots::default()));
        }
        let freed = super::freed_slots(cols.agent_id.iter().flatten().copied());
        let requeued = cols.status.iter().any(|s| s == TaskStatus::Queued.as_str());
        // The slots are given back by the caller (`free_slots`), last.
        let opened = super::runs::write_batch(
            tx,
            &cols,
            &super::runs::AdvanceRows::NONE,
            &[],
            requeued,
            now_us,
        )
        .await?;
        if opened {
            Self::notify_work(tx).await?;
        }
        Ok((completed, freed))
    }

    async fn sweep_running(
        tx: &mut Transaction<'_, Postgres>,
        rows: Vec<PgRow>,
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
        tx: &mut Transaction<'_, Postgres>,
        agent_id: i64,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Sweep> {
        let rows = sqlx::query(
            "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND agent_id = $1",
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
        let mut tx = self.pool.begin().await?;
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

/// The columns of a batched attempt ending, one array per column.
#[derive(Default)]
pub(super) struct EndColumns {
    pub(super) id: Vec<i64>,
    pub(super) lease_token: Vec<i64>,
    pub(super) status: Vec<String>,
    pub(super) attempts_delta: Vec<i64>,
    pub(super) run_after: Vec<Option<i64>>,
    pub(super) result: Vec<Option<String>>,
    pub(super) error: Vec<Option<String>>,
    pub(super) terminal: Vec<bool>,
    pub(super) outcome: Vec<String>,
    pub(super) event: Vec<String>,
    pub(super) started_at: Vec<Option<i64>>,
    pub(super) finished_at: Vec<Option<i64>>,
    pub(super) attempt_error: Vec<Option<String>>,
    pub(super) agent_id: Vec<Option<i64>>,
}

impl FromIterator<super::EndRow> for EndColumns {
    fn from_iter<I: IntoIterator<Item = super::EndRow>>(rows: I) -> Self {
        let mut cols = Self::default();
        for row in rows {
            cols.push(row);
        }
        cols
    }
}

impl EndColumns {
    fn push(&mut self, r: super::EndRow) {
        self.id.push(r.id);
        self.lease_token.push(r.lease_token);
        self.status.push(r.status.to_string());
        self.attempts_delta.push(r.attempts_delta);
        self.run_after.push(r.run_after);
        self.result.push(r.result);
        self.error.push(r.error);
        self.terminal.push(r.terminal);
        self.outcome.push(r.outcome.to_string());
        self.event.push(r.event.to_string());
        self.started_at.push(r.started_at);
        self.finished_at.push(r.finished_at);
        self.attempt_error.push(r.attempt_error);
        self.agent_id.push(r.agent_id);
    }
}

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
        let mut tx = self.pool.begin().await?;
        // Ids are drawn first so each input maps to its row whatever order
        // the insert returns in, and whichever rows an idempotency key skips.
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT nextval('tasks_id_seq') FROM generate_series(1, $1)")
                .bind(specs.len() as i64)
                .fetch_all(&mut *tx)
                .await?;
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
        let inserted: Vec<i64> = sqlx::query_scalar(
            "WITH ins AS ( \
               INSERT INTO tasks (id, task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, \
                 max_attempts, timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at) \
               SELECT v.id, v.task_type, v.payload, v.urgency, v.time_sensitivity, v.importance, v.priority, v.rank, 'queued', \
                 v.max_attempts, v.timeout_ms, v.backoff, \
                 ARRAY(SELECT json_array_elements_text(v.labels::json)), v.key, v.run_after, $15, $15 \
               FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::float8[], \
                 $8::float8[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::bigint[]) \
                 AS v(id, task_type, payload, urgency, time_sensitivity, importance, priority, rank, max_attempts, \
                      timeout_ms, backoff, labels, key, run_after) \
               ORDER BY v.id \
               ON CONFLICT (idempotency_key) DO NOTHING RETURNING id) \
             SELECT id FROM ins",
        )
        .bind(&ids)
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
        .fetch_all(&mut *tx)
        .await?;
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
                    .fetch_one(&mut *tx)
                    .await?;
            out.push(SubmittedTask {
                id: row.try_get("id")?,
                status: super::rows::task_status(&row.try_get::<String, _>("status")?)?,
                priority: row.try_get("priority")?,
                created: false,
            });
        }
        if !inserted.is_empty() {
            Self::notify_work(&mut tx).await?;
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
        let mut claims = self
            .claim_group(&[(agent_id, max_tasks)], now_us, lease_ttl_us)
            .await?;
        Ok(claims.pop().unwrap_or_default())
    }

    async fn claim_group(
        &self,
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
                 AND EXISTS (SELECT 1 FROM tasks t, kind WHERE t.status = 'queued' AND t.run_after <= $3 \
                   AND t.task_type = ANY(kind.task_types) AND t.required_labels <@ kind.labels) \
               ORDER BY a.id FOR UPDATE OF a), \
             slots AS ( \
               SELECT id, load, sum(want) OVER (ORDER BY load, ord) - want AS lo, sum(want) OVER (ORDER BY load, ord) AS hi FROM ag), \
             picked AS ( \
               SELECT t.id, t.rank FROM tasks t, kind \
               WHERE t.status = 'queued' AND t.run_after <= $3 \
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
        .fetch_all(&self.claims)
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
        let mut tx = self.pool.begin().await?;
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

    async fn register_agent(&self, reg: &Registration<'_>, now_us: i64) -> Result<Registered> {
        let spec = reg.spec;
        let mut tx = self.pool.begin().await?;
        let resumed: Option<i64> = match reg.key_hash {
            Some(key) => {
                sqlx::query_scalar(
                    "UPDATE agents SET name = $1, hostname = $2, version = $3, task_types = $4, labels = $5, \
                     capacity = $6, status = CASE WHEN drained THEN 'draining' ELSE 'online' END, token_hash = $7, enrollment_id = $8, last_heartbeat_at = $9 \
                     WHERE key_hash = $10 AND status <> 'revoked' RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.hostname)
                .bind(&spec.version)
                .bind(&spec.task_types)
                .bind(&spec.labels)
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
                let ids: Vec<i64> = reg.resuming.iter().map(|l| l.task_id).collect();
                let tokens: Vec<i64> = reg.resuming.iter().map(|l| l.lease_token).collect();
                let rows = sqlx::query(
                    "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND agent_id = $1 \
                     AND (id, lease_token) NOT IN (SELECT * FROM unnest($2::bigint[], $3::bigint[]))",
                )
                .bind(agent_id)
                .bind(&ids)
                .bind(&tokens)
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
                        "SELECT id FROM agents WHERE key_hash = $1 AND status = 'revoked'",
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
                     VALUES ($1, $2, $3, $4, $5, $6, 0, 'online', $7, $8, $8, $9, $10) RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.hostname)
                .bind(&spec.version)
                .bind(&spec.task_types)
                .bind(&spec.labels)
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
            "SELECT id, name, status, capacity, running, task_types, labels FROM agents WHERE token_hash = $1 \
             AND NOT EXISTS (SELECT 1 FROM enrollment_tokens e WHERE e.id = agents.enrollment_id AND e.revoked_at IS NOT NULL)",
        )
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(AgentSession {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                status: super::rows::agent_status(&row.try_get::<String, _>("status")?)?,
                capacity: row.try_get("capacity")?,
                running: row.try_get("running")?,
                task_types: row.try_get("task_types")?,
                labels: row.try_get("labels")?,
            })
        })
        .transpose()
    }

    async fn deregister_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        let sweep = self
            .retire_agent(
                agent_id,
                "UPDATE agents SET status = 'deregistered' WHERE id = $1 RETURNING id",
                SweptBecause::Deregistered,
                now_us,
            )
            .await?;
        Ok(sweep.unwrap_or_default())
    }

    async fn revoke_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        self.retire_agent(
            agent_id,
            "UPDATE agents SET status = 'revoked' WHERE id = $1 RETURNING id",
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
            sqlx::query("UPDATE agents SET status = $1, drained = ($1 = 'draining') WHERE id = $2 AND status IN ($1, $3)")
                .bind(to)
                .bind(agent_id)
                .bind(from)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if done == 0 {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT status FROM agents WHERE id = $1")
                    .bind(agent_id)
                    .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(agent_view!(row))).collect()
    }

    async fn get_task(&self, id: i64) -> Result<Option<TaskDetail>> {
        let Some(row) = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT * FROM task_attempts WHERE task_id = $1 ORDER BY claimed_at, attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let events = sqlx::query("SELECT * FROM task_events WHERE task_id = $1 ORDER BY id")
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
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR task_type = $2) \
             AND ($3::bigint IS NULL OR agent_id = $3) AND ($4::bigint IS NULL OR id < $4) ORDER BY {order} LIMIT $5"
        ))
        .bind(filter.status.map(TaskStatus::as_str))
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
        match super::rows::task_status(&row.try_get::<String, _>("status")?)? {
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
        super::stats_of(
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
            "SELECT min(run_after) FROM tasks WHERE status = 'queued' AND run_after > $1",
        )
        .bind(now_us)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn mark_silent_agents_offline(&self, silent_since_us: i64, now_us: i64) -> Result<Sweep> {
        let mut tx = self.pool.begin().await?;
        // Locked in id order, as a group claim locks agents.
        let agents: Vec<i64> = sqlx::query_scalar(
            "WITH silent AS ( \
               SELECT id FROM agents WHERE status IN ('online', 'draining') AND last_heartbeat_at < $1 \
               ORDER BY id FOR UPDATE) \
             UPDATE agents a SET status = 'offline' FROM silent WHERE a.id = silent.id RETURNING a.id",
        )
        .bind(silent_since_us)
        .fetch_all(&mut *tx)
        .await?;
        let mut sweep = Sweep::default();
        if !agents.is_empty() {
            let rows = sqlx::query(
                "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND agent_id = ANY($1)",
            )
            .bind(&agents)
            .fetch_all(&mut *tx)
            .await?;
            sweep = Self::sweep_running(&mut tx, rows, SweptBecause::Offline, now_us).await?;
        }
        tx.commit().await?;
        sweep.agents_offline = agents;
        Ok(sweep)
    }

    async fn expire_leases(&self, now_us: i64) -> Result<Sweep> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND lease_expires_at <= $1",
        )
        .bind(now_us)
        .fetch_all(&mut *tx)
        .await?;
        let sweep = Self::sweep_running(&mut tx, rows, SweptBecause::LeaseExpired, now_us).await?;
        tx.commit().await?;
        Ok(sweep)
    }

    async fn try_lead(&self, name: &str, holder: &str, now_us: i64, ttl_us: i64) -> Result<bool> {
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO leadership (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leadership.holder = excluded.holder OR leadership.expires_at < $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_us + ttl_us)
        .bind(now_us)
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.is_some())
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leadership WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
