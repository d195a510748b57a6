//! The verdict: Jepsen's total-queue categories and the timing bounds,
//! worked out from the database and from the handlers' side-effect log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;

use crate::db::Db;
use crate::faults::{Event, Kind, Report};
use crate::sidelog::{Exec, SideLog};
use crate::workload::{Submitted, TASKS_PER_RUN};

/// One line of the table: a figure, its bound, and whether it holds.
pub struct Row {
    pub name: String,
    pub value: String,
    pub bound: String,
    /// None: informational.
    pub ok: Option<bool>,
}

fn row(name: &str, value: impl ToString, bound: &str, ok: Option<bool>) -> Row {
    Row {
        name: name.into(),
        value: value.to_string(),
        bound: bound.into(),
        ok,
    }
}

/// After a fault ends, results may still arrive late (agent back-off is up
/// to 5 s) and lose their lease: an execution that close to a fault counts
/// as hit by it.
fn hit(e: &Exec, ev: &Event, timeout: Duration) -> bool {
    let after = (timeout + Duration::from_secs(5)).as_micros() as i64;
    let before = 1_000_000;
    let end = e.end_us.unwrap_or(i64::MAX);
    let per_agent = ev.agent_pid.is_some();
    let same_agent = ev.agent_pid == Some(e.agent_pid)
        || (e.agent_pid <= 1 && ev.agent.as_deref() == Some(e.agent.as_str()));
    (!per_agent || same_agent) && e.start_us <= ev.end_us + after && end + before >= ev.start_us
}

/// A handler whose agent was killed between starting it and its first
/// line: its parent was already init. It belongs to the killed agent.
fn born_orphan(e: &Exec, ev: &Event) -> bool {
    e.agent_pid <= 1
        && ev.kind == Kind::AgentKill
        && ev.agent.as_deref() == Some(e.agent.as_str())
        && e.start_us >= ev.start_us
        && e.start_us <= ev.start_us + 1_000_000
}

pub async fn check(
    db: &Db,
    log: &SideLog,
    submitted: &Submitted,
    faults: &Report,
    capacity: u32,
    timeout: Duration,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let tasks = db.tasks().await?;
    let status: HashMap<i64, &str> = tasks.iter().map(|t| (t.0, t.1.as_str())).collect();
    let run_tasks: HashSet<i64> = tasks
        .iter()
        .filter(|t| t.3.is_some())
        .map(|t| t.0)
        .collect();
    let acked: HashSet<i64> = submitted.task_ids.iter().copied().collect();
    let expected: HashSet<i64> = acked.union(&run_tasks).copied().collect();
    let by_task = log.by_task();

    rows.push(row(
        "tasks acknowledged / run tasks",
        format!("{} / {}", acked.len(), run_tasks.len()),
        "",
        None,
    ));
    rows.push(row(
        "submissions never accepted",
        submitted.given_up,
        "0",
        Some(submitted.given_up == 0),
    ));
    rows.push(row("submit tries retried", submitted.retried, "", None));

    // Lost: acknowledged but not finished (or gone); or finished in the
    // database without its side effect.
    let lost_db = expected
        .iter()
        .filter(|id| {
            !matches!(
                status.get(id),
                Some(&("succeeded" | "failed" | "cancelled"))
            )
        })
        .count();
    rows.push(row(
        "lost (DB: not final or missing)",
        lost_db,
        "0",
        Some(lost_db == 0),
    ));
    let not_succeeded = expected
        .iter()
        .filter(|id| matches!(status.get(id), Some(&("failed" | "cancelled"))))
        .count();
    rows.push(row(
        "failed or cancelled (20 attempts each)",
        not_succeeded,
        "0",
        Some(not_succeeded == 0),
    ));
    let final_attempt: HashMap<i64, i64> = db.succeeded_attempts().await?.into_iter().collect();
    let mut lost_effect = 0;
    for id in &expected {
        if status.get(id) != Some(&"succeeded") {
            continue;
        }
        let ended = by_task
            .get(id)
            .map(|v| {
                v.iter()
                    .filter(|e| e.end_us.is_some() && Some(&e.attempt) == final_attempt.get(id))
                    .count()
            })
            .unwrap_or(0);
        if ended == 0 {
            lost_effect += 1;
        }
    }
    rows.push(row(
        "lost (succeeded without its handler's end)",
        lost_effect,
        "0",
        Some(lost_effect == 0),
    ));

    // Unexpected: side effects of tasks nobody submitted; rows nobody asked for.
    let unexpected_log = by_task.keys().filter(|id| !expected.contains(id)).count();
    rows.push(row(
        "unexpected (log)",
        unexpected_log,
        "0",
        Some(unexpected_log == 0),
    ));
    let unexpected_db = tasks.iter().filter(|t| !expected.contains(&t.0)).count();
    rows.push(row(
        "unexpected (DB)",
        unexpected_db,
        "0",
        Some(unexpected_db == 0),
    ));
    rows.push(row(
        "torn or stray log lines",
        log.bad_lines + log.orphan_ends,
        "0",
        Some(log.bad_lines + log.orphan_ends == 0),
    ));

    // Duplicated completions: a handler that ran to its end more than once,
    // allowed only where all but one of those runs were hit by a fault.
    let mut dup_total = 0;
    let mut dup_unexplained = Vec::new();
    let mut dup_by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut final_twice = 0;
    for (id, execs) in &by_task {
        let ended: Vec<&&Exec> = execs.iter().filter(|e| e.end_us.is_some()).collect();
        if let Some(a) = final_attempt.get(id) {
            let same = ended.iter().filter(|e| e.attempt == *a).count();
            if same > 1 {
                final_twice += 1;
            }
        }
        if ended.len() < 2 {
            continue;
        }
        dup_total += 1;
        let mut kinds = Vec::new();
        for e in &ended {
            if let Some(ev) = faults.events.iter().find(|ev| hit(e, ev, timeout)) {
                kinds.push(ev.kind.name());
            }
        }
        if kinds.len() + 1 >= ended.len() {
            *dup_by_kind.entry(kinds[0]).or_default() += 1;
        } else {
            dup_unexplained.push(*id);
        }
    }
    rows.push(row("duplicated completions, all", dup_total, "", None));
    for (kind, n) in &dup_by_kind {
        rows.push(row(
            &format!("  of them: handler hit by {kind}"),
            n,
            "",
            None,
        ));
    }
    let shown: Vec<String> = dup_unexplained
        .iter()
        .take(10)
        .map(|i| i.to_string())
        .collect();
    rows.push(row(
        "duplicated completions, no fault to explain",
        if dup_unexplained.is_empty() {
            "0".to_string()
        } else {
            format!("{} (tasks {})", dup_unexplained.len(), shown.join(", "))
        },
        "0",
        Some(dup_unexplained.is_empty()),
    ));
    rows.push(row(
        "final attempt's handler ended twice",
        final_twice,
        "",
        None,
    ));

    // Workflow runs.
    let runs = db.runs().await?;
    let runs_not_ok = runs.iter().filter(|r| r.1 != "succeeded").count();
    rows.push(row(
        "runs started / not succeeded",
        format!("{} / {}", runs.len(), runs_not_ok),
        "0 not succeeded",
        Some(runs_not_ok == 0 && runs.len() >= submitted.run_ids.len()),
    ));
    let steps = db.step_successes().await?;
    let step_not_once = steps.iter().filter(|s| s.3 != 1).count();
    let step_tasks: i64 = steps.iter().map(|s| s.3).sum();
    let unfinished_steps = db.unfinished_steps().await?.len();
    let want = runs.len() * TASKS_PER_RUN;
    rows.push(row(
        "run step tasks succeeded / expected (each once)",
        format!(
            "{step_tasks} / {want}, {step_not_once} not once, {unfinished_steps} steps unfinished"
        ),
        "all, once",
        Some(step_tasks as usize == want && step_not_once == 0 && unfinished_steps == 0),
    ));

    // Capacity: concurrent handlers of one agent process.
    let mut worst = 0usize;
    let mut worst_agent = String::new();
    let mut over = 0usize;
    let mut by_agent: HashMap<u32, Vec<&Exec>> = HashMap::new();
    for e in &log.execs {
        by_agent.entry(e.agent_pid).or_default().push(e);
    }
    for (_, execs) in by_agent.iter().filter(|(pid, _)| **pid > 1) {
        let mut points: Vec<(i64, i32)> = Vec::new();
        for e in execs {
            // No `end`: the handler was killed (a cancel, a timeout, its
            // agent's death) at an unknown moment; its slot was given back
            // then, so it counts only at its start.
            let end = e.end_us.unwrap_or(e.start_us);
            points.push((e.start_us, 1));
            points.push((end, -1));
        }
        // At equal times an end frees its slot before a start takes one.
        points.sort();
        let mut now = 0i32;
        for (_, d) in points {
            now += d;
            if now.max(0) as usize > worst {
                worst = now.max(0) as usize;
                worst_agent = execs[0].agent.clone();
            }
            // `now` dips below zero where ends sort before starts at one
            // instant; only a positive count can exceed the capacity.
            if d > 0 && now > 0 && now as u32 > capacity {
                over += 1;
            }
        }
    }
    rows.push(row(
        "most concurrent handlers of one agent",
        format!("{worst} ({worst_agent})"),
        &format!("≤ {capacity}"),
        Some(over == 0),
    ));

    // Requeue after an agent went silent, and late results refused.
    let requeues = db.requeues().await?;
    let mut requeued_at: HashMap<i64, Vec<i64>> = HashMap::new();
    for (task, at, _) in &requeues {
        requeued_at.entry(*task).or_default().push(*at);
    }
    let bound_us = (timeout + Duration::from_secs(1)).as_micros() as i64;
    let mut delays: Vec<f64> = Vec::new();
    let mut never = 0usize;
    let mut overlapped = 0usize;
    let mut worst_delay = (0.0f64, "", 0i64);
    let mut late_accepted = 0usize;
    let mut short_cut_requeues = 0usize;
    for ev in &faults.events {
        let Some(pid) = ev.agent_pid else { continue };
        let in_flight: Vec<&Exec> = log
            .execs
            .iter()
            .filter(|e| (e.agent_pid == pid && e.start_us <= ev.start_us) || born_orphan(e, ev))
            .filter(|e| e.end_us.is_none_or(|end| end > ev.start_us))
            .collect();
        for e in &in_flight {
            let first = requeued_at
                .get(&e.task)
                .and_then(|v| v.iter().copied().filter(|at| *at >= ev.start_us).min());
            match ev.kind {
                Kind::AgentKill | Kind::SigStop | Kind::CutLong => {
                    // The next execution elsewhere, when the database has no event.
                    let next = by_task.get(&e.task).and_then(|v| {
                        v.iter()
                            .filter(|x| x.agent_pid != pid && x.start_us >= ev.start_us)
                            .map(|x| x.start_us)
                            .min()
                    });
                    let outage = faults.events.iter().any(|o| {
                        o.agent_pid.is_none()
                            && o.start_us <= ev.start_us + bound_us
                            && o.end_us >= ev.start_us
                    });
                    match first.or(next) {
                        Some(_) if outage => overlapped += 1,
                        Some(at) => {
                            let ms = (at - ev.start_us) as f64 / 1000.0;
                            if ms > worst_delay.0 {
                                worst_delay = (ms, ev.kind.name(), e.task);
                            }
                            delays.push(ms)
                        }
                        None => never += 1,
                    }
                    if ev.kind != Kind::AgentKill
                        && final_attempt.get(&e.task) == Some(&e.attempt)
                        && first.is_some()
                    {
                        late_accepted += 1;
                    }
                }
                Kind::CutShort if first.is_some_and(|at| at <= ev.end_us) => {
                    short_cut_requeues += 1;
                }
                _ => {}
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    let max_delay = delays.last().copied().unwrap_or(0.0);
    rows.push(row(
        "silent agent → its tasks requeued, max",
        format!(
            "{max_delay:.0} ms (n={}, p50 {:.0} ms; worst: task {} after {})",
            delays.len(),
            pct(&delays, 0.5),
            worst_delay.2,
            worst_delay.1
        ),
        &format!("≤ {} ms", bound_us / 1000),
        Some(max_delay <= bound_us as f64 / 1000.0),
    ));
    rows.push(row("  in flight, never requeued", never, "", None));
    rows.push(row(
        "  not timed: a server or database outage overlapped",
        overlapped,
        "",
        None,
    ));
    rows.push(row(
        "late results accepted (SIGSTOP, long cut)",
        late_accepted,
        "0",
        Some(late_accepted == 0),
    ));
    rows.push(row(
        "tasks requeued during a short cut",
        short_cut_requeues,
        "",
        None,
    ));
    for ev in faults
        .events
        .iter()
        .filter(|e| matches!(e.kind, Kind::SigStop | Kind::CutLong))
    {
        let pid = ev.agent_pid.unwrap_or(0);
        let ended_while = log
            .execs
            .iter()
            .filter(|e| e.agent_pid == pid && e.start_us <= ev.start_us)
            .filter(|e| {
                e.end_us
                    .is_some_and(|end| end > ev.start_us && end <= ev.end_us)
            })
            .count();
        let refused = ev.refused.unwrap_or(0.0);
        rows.push(row(
            &format!(
                "{} {}: results refused (409 stale)",
                ev.kind.name(),
                ev.agent.as_deref().unwrap_or("")
            ),
            format!("{refused:.0} refused, {ended_while} finished while cut off"),
            "≥ 1 if any finished",
            Some(ended_while == 0 || refused >= 1.0),
        ));
    }

    // Leader failover, database restart, disk.
    for ms in &faults.failovers_ms {
        rows.push(row(
            "leader failover",
            format!("{ms:.0} ms"),
            "≤ 5000 ms",
            Some(*ms <= 5000.0),
        ));
    }
    for (down, back) in &faults.pg_restarts {
        rows.push(row(
            "PostgreSQL restart: down / servers answering after",
            format!("{down:.0} ms / {back:.0} ms"),
            "",
            None,
        ));
    }
    for note in &faults.disk_notes {
        rows.push(row("disk full", note, "clear errors", None));
    }
    for ms in &faults.disk_recovery_ms {
        rows.push(row(
            "disk full: room → submit accepted",
            format!("{ms:.0} ms"),
            "",
            None,
        ));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for ev in &faults.events {
        *counts.entry(ev.kind.name()).or_default() += 1;
    }
    let injected: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    rows.push(row("faults injected", injected.join(", "), "", None));
    for (kind, why) in &faults.skipped {
        rows.push(row(&format!("SKIP {}", kind.name()), why, "", None));
    }
    for p in &faults.problems {
        rows.push(row("problem", p, "none", Some(false)));
    }
    Ok(rows)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
