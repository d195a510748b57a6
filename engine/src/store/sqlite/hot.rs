//! The queue's hot path on SQLite: submits, claims and results, as jobs for
//! the [writer thread](super::writer). Each row is one cached prepared
//! statement; decisions that are not SQL come from the same pure planning
//! as on PostgreSQL (`plan_endings`, `lifecycle`).

use drover_protocol::agent::Assignment;
use drover_protocol::api::{AgentStatus, SubmittedTask, TaskStatus};
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::plan::{Current, Ending, FreedSlots, TaskRow};
use crate::store::{rows, Claim, Completed, Result};

/// Inserts the tasks in order; a task whose idempotency key exists (also
/// earlier in the same batch) is answered with the task that has it.
pub(crate) fn submit(conn: &Connection, tasks: &[TaskRow]) -> Result<Vec<SubmittedTask>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO tasks (task_type, payload, urgency, time_sensitivity, importance, priority, rank, status, \
           max_attempts, timeout_ms, retry_backoff_ms, required_labels, idempotency_key, run_after, created_at, updated_at, \
           concurrency_key, concurrency_limit, held) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16, \
           ?17) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )?;
    let mut out = Vec::with_capacity(tasks.len());
    let mut arrivals = super::keys::Arrivals::default();
    for t in tasks {
        let held = arrivals.held(conn, t.concurrency_key.as_deref(), t.concurrency_limit)?;
        let inserted = insert.execute(params![
            t.task_type,
            t.payload,
            t.urgency,
            t.time_sensitivity,
            t.importance,
            t.priority,
            t.rank,
            t.max_attempts,
            t.timeout_ms,
            t.retry_backoff_ms,
            t.required_labels,
            t.idempotency_key,
            t.run_after,
            t.created_at,
            t.concurrency_key,
            t.concurrency_limit,
            held,
        ])?;
        if inserted == 1 {
            out.push(SubmittedTask {
                id: conn.last_insert_rowid(),
                status: TaskStatus::Queued,
                priority: t.priority,
                created: true,
            });
            continue;
        }
        let mut existing = conn
            .prepare_cached("SELECT id, status, priority FROM tasks WHERE idempotency_key = ?1")?;
        let (id, status, priority) = existing.query_row([&t.idempotency_key], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        out.push(SubmittedTask {
            id,
            status: rows::task_status(&status)?,
            priority,
            created: false,
        });
    }
    Ok(out)
}

/// One agent's claim (see `QueueStore::claim`).
pub(crate) fn claim(
    conn: &Connection,
    agent_id: i64,
    max_tasks: i64,
    now_us: i64,
    lease_ttl_us: i64,
) -> Result<Claim> {
    let agent = conn
        .prepare_cached(
            "SELECT capacity, running, status, task_types, labels FROM agents WHERE id = ?1",
        )?
        .query_row([agent_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .optional()?;
    let Some((capacity, running, status, task_types, labels)) = agent else {
        return Ok(Claim {
            drain: true,
            ..Claim::default()
        });
    };
    let want = max_tasks.min(capacity - running);
    let online = status == AgentStatus::Online.as_str();
    if !online || want <= 0 {
        return Ok(Claim {
            tasks: vec![],
            running,
            capacity,
            drain: !online,
        });
    }
    let agent_load = rows::load(running, capacity);
    // The claim index, named: it yields queued tasks in claim order, so the
    // scan stops at the limit. Without statistics SQLite prefers the status
    // index and sorts every queued task on each claim.
    let mut take = conn.prepare_cached(
        "UPDATE tasks SET status = 'running', attempts = attempts + 1, claims = claims + 1, \
         lease_token = random(), agent_id = ?1, claim_load = ?2, started_at = ?3, updated_at = ?3, \
         lease_expires_at = MIN(?3 + ?4, ?3 + timeout_ms * 1000) \
         WHERE id IN ( \
           SELECT id FROM tasks INDEXED BY tasks_claim \
           WHERE status = 'queued' AND held = 0 AND run_after <= ?3 \
             AND task_type IN (SELECT value FROM json_each(?5)) \
             AND (required_labels = '[]' OR NOT EXISTS ( \
                  SELECT 1 FROM json_each(tasks.required_labels) r \
                  WHERE r.value NOT IN (SELECT value FROM json_each(?6)))) \
           ORDER BY rank DESC, id LIMIT ?7) \
         RETURNING id, lease_token, task_type, payload, attempts, max_attempts, timeout_ms, priority, rank",
    )?;
    let mut ranked: Vec<(f64, Assignment)> = Vec::with_capacity(want as usize);
    let mut taken = take.query(params![
        agent_id,
        agent_load,
        now_us,
        lease_ttl_us,
        task_types,
        labels,
        want
    ])?;
    while let Some(r) = taken.next()? {
        let payload: String = r.get(3)?;
        ranked.push((
            r.get(8)?,
            Assignment {
                task_id: r.get(0)?,
                lease_token: r.get(1)?,
                task_type: r.get(2)?,
                payload: serde_json::from_str(&payload)?,
                attempt: r.get::<_, i64>(4)? as u32,
                max_attempts: r.get::<_, i64>(5)? as u32,
                timeout_ms: r.get::<_, i64>(6)? as u64,
                priority: r.get(7)?,
            },
        ));
    }
    drop(taken);
    let mut attempt = conn.prepare_cached(
        "INSERT INTO task_attempts (task_id, lease_token, attempt, agent_id, agent_load, claimed_at, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running')",
    )?;
    for (_, a) in &ranked {
        attempt.execute(params![
            a.task_id,
            a.lease_token,
            a.attempt,
            agent_id,
            agent_load,
            now_us
        ])?;
    }
    let claimed = ranked.len() as i64;
    if claimed > 0 {
        conn.prepare_cached("UPDATE agents SET running = running + ?1 WHERE id = ?2")?
            .execute([claimed, agent_id])?;
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.task_id.cmp(&b.1.task_id)));
    Ok(Claim {
        tasks: ranked.into_iter().map(|(_, a)| a).collect(),
        running: running + claimed,
        capacity,
        drain: false,
    })
}

/// Claims for a group of agents of one kind in one transaction (see
/// `QueueStore::claim_group`): by their load now, ties in the order given.
/// Once an agent is left with free slots the queue holds nothing more for
/// the group, and the rest are answered without a query: no tasks, their
/// own counts, and told to drain if they are not online (an agent that is
/// gone is still told to drain).
pub(crate) fn claim_group(
    conn: &Connection,
    agents: &[(i64, i64)],
    now_us: i64,
    lease_ttl_us: i64,
) -> Result<Vec<Claim>> {
    // Per agent: (running, capacity, online).
    let mut known = std::collections::HashMap::with_capacity(agents.len());
    let mut of_agent =
        conn.prepare_cached("SELECT running, capacity, status FROM agents WHERE id = ?1")?;
    for &(id, _) in agents {
        let found = of_agent
            .query_row([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)? == AgentStatus::Online.as_str(),
                ))
            })
            .optional()?;
        if let Some(k) = found {
            known.insert(id, k);
        }
    }
    let load = |i: usize| {
        known
            .get(&agents[i].0)
            .map_or(f64::MAX, |&(running, capacity, _)| {
                rows::load(running, capacity)
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
        let c = claim(conn, agent_id, max_tasks, now_us, lease_ttl_us)?;
        // An agent that is draining (or gone) got nothing whatever the queue holds.
        exhausted |= !c.drain && (c.tasks.len() as i64) < max_tasks && c.running < c.capacity;
        if let Some(k) = known.get_mut(&agent_id) {
            k.0 = c.running;
        }
        claims[i] = c;
    }
    Ok(claims)
}

/// Ends the attempts whose lease is current and held by the sender (see
/// `plan_endings`); gives the agents their slots back last.
pub(crate) fn end_attempts(
    conn: &Connection,
    endings: &[Ending],
    now_us: i64,
) -> Result<Completed> {
    if endings.is_empty() {
        return Ok(Completed::default());
    }
    let mut lease = conn.prepare_cached(
        "SELECT attempts, max_attempts, retry_backoff_ms, agent_id, run_id, concurrency_key FROM tasks \
         WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
    )?;
    let mut current = Current::with_capacity(endings.len());
    let mut key_of: std::collections::HashMap<i64, String> = Default::default();
    for e in endings {
        let found = lease
            .query_row([e.task_id, e.lease_token], |r| {
                Ok((
                    crate::lifecycle::RunningTask {
                        attempts: r.get(0)?,
                        max_attempts: r.get(1)?,
                        retry_backoff_ms: r.get(2)?,
                    },
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()?;
        if let Some((task, agent, run, key)) = found {
            current.insert((e.task_id, e.lease_token), (task, agent, run));
            if let Some(key) = key {
                key_of.insert(e.task_id, key);
            }
        }
    }
    let (completed, rows) = crate::store::plan::plan_endings(endings, &current, now_us);
    let mut task = conn.prepare_cached(
        "UPDATE tasks SET status = ?2, attempts = attempts + ?3, run_after = COALESCE(?4, run_after), \
           result = ?5, error = ?6, agent_id = CASE WHEN ?7 THEN agent_id ELSE NULL END, \
           lease_expires_at = NULL, updated_at = ?8, finished_at = CASE WHEN ?7 THEN ?8 ELSE NULL END \
         WHERE id = ?1",
    )?;
    let mut attempt = conn.prepare_cached(
        "UPDATE task_attempts SET outcome = ?3, error = ?4, finished_at = COALESCE(?5, ?7), \
           started_at = COALESCE(?6, started_at) \
         WHERE task_id = ?1 AND lease_token = ?2",
    )?;
    let mut event = conn.prepare_cached(
        "INSERT INTO task_events (task_id, at, kind, status, agent_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in &rows {
        task.execute(params![
            r.id,
            r.status,
            r.attempts_delta,
            r.run_after,
            r.result,
            r.error,
            r.terminal,
            now_us
        ])?;
        attempt.execute(params![
            r.id,
            r.lease_token,
            r.outcome,
            r.attempt_error,
            r.finished_at,
            r.started_at,
            now_us
        ])?;
        event.execute(params![
            r.id, now_us, r.event, r.status, r.agent_id, r.error
        ])?;
    }
    free_slots(
        conn,
        &crate::store::plan::freed_slots(rows.iter().filter_map(|r| r.agent_id)),
    )?;
    // A task that ended for good gave its key's slot back: refill it now,
    // so the agents' next claim (or this answer's eager dispatch) sees it.
    let freed: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.terminal)
        .filter_map(|r| key_of.get(&r.id).map(String::as_str))
        .collect();
    super::keys::refill(conn, freed)?;
    Ok(completed)
}

/// Gives agents back the slots their ended attempts held (C -= n).
fn free_slots(conn: &Connection, freed: &FreedSlots) -> Result<()> {
    let mut free =
        conn.prepare_cached("UPDATE agents SET running = MAX(running - ?1, 0) WHERE id = ?2")?;
    for &(agent, n) in freed {
        free.execute([n, agent])?;
    }
    Ok(())
}
