//! "Why is this task waiting?": what holds a queued task, worked out from
//! the task, the agents and the queue ahead of it. Pure, so every reason is
//! unit-tested; the server gathers the inputs (`GET /api/v1/tasks/{id}`).

use drover_protocol::api::{AgentGap, AgentStatus, AgentView, TaskView, WaitReason, Waiting};

/// The closest agents named when none can take a task.
const CLOSEST: usize = 3;

/// The queue ahead of a task, as counted by the store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ahead {
    pub all: i64,
    pub same_type: i64,
    pub capped: bool,
}

/// A full concurrency key, as the store reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyState {
    pub key: String,
    pub limit: i64,
    pub admitted: i64,
    /// Some of the tasks holding its slots.
    pub holders: Vec<i64>,
}

/// Whether `agent` could ever take tasks of `task_type` needing `labels`.
pub fn can_take(agent: &AgentView, task_type: &str, labels: &[String]) -> bool {
    agent.task_types.iter().any(|t| t == task_type)
        && labels.iter().all(|l| agent.labels.contains(l))
}

/// What `agent` lacks to take the task now.
fn gaps(agent: &AgentView, task_type: &str, labels: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    if !agent.task_types.iter().any(|t| t == task_type) {
        missing.push(format!("handles no {task_type:?} tasks"));
    }
    for l in labels.iter().filter(|l| !agent.labels.contains(l)) {
        missing.push(format!("lacks label {l:?}"));
    }
    match agent.status {
        AgentStatus::Online => {}
        AgentStatus::Draining => missing.push("is draining".into()),
        AgentStatus::Offline => missing.push("is offline".into()),
        AgentStatus::Deregistered => missing.push("has deregistered".into()),
        AgentStatus::Revoked => missing.push("is revoked".into()),
    }
    missing
}

/// Explains a queued task. `aged_priority` is its P aged to `now_us`;
/// `starts_per_s` how fast tasks of its type started lately (if known);
/// `key` the state of its concurrency key when it is held.
pub fn explain(
    task: &TaskView,
    agents: &[AgentView],
    key: Option<KeyState>,
    ahead: Ahead,
    aged_priority: f64,
    starts_per_s: Option<f64>,
    now_us: i64,
) -> Waiting {
    let labels = &task.required_labels;
    let mut reasons = Vec::new();
    let mut not_before = None;
    if task.run_after_us > now_us {
        let cause = if task.attempts > 0 {
            "retry_backoff"
        } else {
            "run_after"
        };
        not_before = Some(task.run_after_us);
        reasons.push(WaitReason::NotBefore {
            until_us: task.run_after_us,
            cause: cause.into(),
        });
    }
    let able: Vec<&AgentView> = agents
        .iter()
        .filter(|a| a.status == AgentStatus::Online && can_take(a, &task.task_type, labels))
        .collect();
    let free: i64 = able.iter().map(|a| (a.capacity - a.running).max(0)).sum();
    if able.is_empty() {
        let mut closest: Vec<(usize, &AgentView, Vec<String>)> = agents
            .iter()
            .filter(|a| !matches!(a.status, AgentStatus::Revoked | AgentStatus::Deregistered))
            .map(|a| {
                let g = gaps(a, &task.task_type, labels);
                (g.len(), a, g)
            })
            .collect();
        closest.sort_by_key(|(n, a, _)| (*n, a.id));
        reasons.push(WaitReason::NoAgent {
            task_type: task.task_type.clone(),
            required_labels: labels.clone(),
            closest: closest
                .into_iter()
                .take(CLOSEST)
                .map(|(_, a, missing)| AgentGap {
                    agent_id: a.id,
                    name: a.name.clone(),
                    status: a.status,
                    missing,
                })
                .collect(),
        });
    } else if free == 0 {
        reasons.push(WaitReason::AgentsFull {
            agents: able.len() as i64,
            running: able.iter().map(|a| a.running).sum(),
            capacity: able.iter().map(|a| a.capacity).sum(),
        });
    }
    let held = task.held && key.is_some();
    if let (true, Some(k)) = (task.held, key) {
        reasons.insert(
            usize::from(not_before.is_some()),
            WaitReason::KeyFull {
                key: k.key,
                limit: k.limit,
                admitted: k.admitted,
                held_by: k.holders,
            },
        );
    }
    if ahead.all > 0 && not_before.is_none() && !held {
        reasons.push(WaitReason::QueuedBehind {
            ahead: ahead.all,
            ahead_same_type: ahead.same_type,
        });
    }
    if reasons.is_empty() {
        reasons.push(WaitReason::Ready { free_slots: free });
    }
    let summary = summary(&reasons[0], ahead.capped);
    let estimated_start_us = if able.is_empty() {
        None
    } else {
        let from = not_before.unwrap_or(now_us);
        match (free > 0 && ahead.same_type == 0 && !held, starts_per_s) {
            (true, _) => Some(from),
            (false, Some(rate)) if rate > 0.0 => {
                let wait_s = (ahead.same_type + 1) as f64 / rate;
                Some(from + (wait_s * 1e6) as i64)
            }
            _ => None,
        }
    };
    Waiting {
        summary,
        reasons,
        aged_priority,
        ahead: ahead.all,
        ahead_same_type: ahead.same_type,
        ahead_capped: ahead.capped,
        estimated_start_us,
    }
}

fn summary(reason: &WaitReason, capped: bool) -> String {
    let plus = if capped { "+" } else { "" };
    match reason {
        WaitReason::NotBefore { cause, .. } if cause == "retry_backoff" => {
            "waiting out the backoff before its next attempt".into()
        }
        WaitReason::NotBefore { .. } => "not before its run_after time".into(),
        WaitReason::NoAgent {
            task_type,
            required_labels,
            closest,
        } => {
            let labels = if required_labels.is_empty() {
                String::new()
            } else {
                format!(" with labels {}", required_labels.join(", "))
            };
            let near = closest
                .first()
                .map(|g| format!(" (closest: {}, which {})", g.name, g.missing.join(" and ")))
                .unwrap_or_default();
            format!("no online agent handles {task_type:?}{labels}{near}")
        }
        WaitReason::AgentsFull {
            agents,
            running,
            capacity,
        } => format!(
            "all {agents} agent(s) able to run it are full ({running}/{capacity} slots, L = 1)"
        ),
        WaitReason::KeyFull {
            key,
            limit,
            admitted,
            held_by,
        } => {
            let ids: Vec<String> = held_by.iter().map(|id| id.to_string()).collect();
            format!(
                "concurrency key {key:?} is full ({admitted}/{limit}), held by task(s) {}",
                ids.join(", ")
            )
        }
        WaitReason::RateLimited {
            scope,
            per_second,
            next_release_us,
        } => format!(
            "rate-limited by {scope:?} ({per_second} a second) until {}",
            crate::schedule::rfc3339(*next_release_us)
        ),
        WaitReason::QueuedBehind {
            ahead,
            ahead_same_type,
        } => format!(
            "{ahead}{plus} task(s) ahead of it in the claim order ({ahead_same_type}{plus} of its type)"
        ),
        WaitReason::Ready { free_slots } => {
            format!("ready: {free_slots} free slot(s) on agents able to run it; the next claim takes it")
        }
    }
}

/// Adds what holds a rate-held task: its limit, first after any
/// `not_before`, and the summary and start estimate it implies. Queued
/// behind others means nothing while it is not in the claim order.
pub fn rate_limited(waiting: &mut Waiting, scope: String, per_second: f64, next_release_us: i64) {
    waiting.reasons.retain(|r| {
        !matches!(
            r,
            WaitReason::QueuedBehind { .. } | WaitReason::Ready { .. }
        )
    });
    let at = usize::from(matches!(
        waiting.reasons.first(),
        Some(WaitReason::NotBefore { .. })
    ));
    waiting.reasons.insert(
        at,
        WaitReason::RateLimited {
            scope,
            per_second,
            next_release_us,
        },
    );
    waiting.summary = summary(&waiting.reasons[0], waiting.ahead_capped);
    waiting.estimated_start_us = Some(
        waiting
            .estimated_start_us
            .map_or(next_release_us, |e| e.max(next_release_us)),
    );
}

/// A warning for a submit no registered agent could ever take (its type,
/// or its labels), or `None`. Offline agents count: they may come back.
pub fn unreachable(task_type: &str, labels: &[String], agents: &[AgentView]) -> Option<String> {
    let live =
        |a: &&AgentView| !matches!(a.status, AgentStatus::Revoked | AgentStatus::Deregistered);
    if agents
        .iter()
        .filter(live)
        .any(|a| can_take(a, task_type, labels))
    {
        return None;
    }
    if agents
        .iter()
        .filter(live)
        .any(|a| a.task_types.iter().any(|t| t == task_type))
    {
        Some(format!(
            "no registered agent handling {task_type:?} has all of the labels {}: the task waits until one registers",
            labels.join(", ")
        ))
    } else {
        Some(format!(
            "no registered agent handles {task_type:?}: the task waits until one registers"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_protocol::api::TaskStatus;

    const NOW: i64 = 1_000_000_000_000;

    fn task(task_type: &str, labels: &[&str]) -> TaskView {
        TaskView {
            id: 7,
            task_type: task_type.into(),
            payload: serde_json::Value::Null,
            urgency: 0,
            time_sensitivity: 0,
            importance: 0,
            priority: 0.0,
            status: TaskStatus::Queued,
            attempts: 0,
            max_attempts: 3,
            timeout_ms: 1000,
            retry_backoff_ms: 1000,
            required_labels: labels.iter().map(|l| l.to_string()).collect(),
            idempotency_key: None,
            result: None,
            error: None,
            agent_id: None,
            lease_token: None,
            run_after_us: NOW - 1,
            created_at_us: NOW - 1,
            updated_at_us: NOW - 1,
            started_at_us: None,
            finished_at_us: None,
            claim_load: None,
            concurrency_key: None,
            concurrency_limit: None,
            held: false,
            rate_limited: false,
            run_id: None,
            step_id: None,
        }
    }

    fn agent(
        id: i64,
        types: &[&str],
        labels: &[&str],
        running: i64,
        status: AgentStatus,
    ) -> AgentView {
        AgentView {
            id,
            name: format!("a{id}"),
            hostname: "h".into(),
            version: "v".into(),
            task_types: types.iter().map(|t| t.to_string()).collect(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            capacity: 2,
            running,
            load: running as f64 / 2.0,
            status,
            drained: false,
            registered_at_us: 0,
            last_heartbeat_at_us: 0,
        }
    }

    fn explain_t(
        task: &TaskView,
        agents: &[AgentView],
        ahead: Ahead,
        aged: f64,
        rate: Option<f64>,
        now: i64,
    ) -> Waiting {
        explain(task, agents, None, ahead, aged, rate, now)
    }

    #[test]
    fn a_held_task_names_its_full_key_and_who_holds_it() {
        let agents = [agent(1, &["echo"], &[], 0, AgentStatus::Online)];
        let mut t = task("echo", &[]);
        t.held = true;
        let key = KeyState {
            key: "customer:42".into(),
            limit: 2,
            admitted: 2,
            holders: vec![3, 4],
        };
        let w = explain(
            &t,
            &agents,
            Some(key),
            Ahead {
                all: 5,
                same_type: 5,
                capped: false,
            },
            0.0,
            Some(1.0),
            NOW,
        );
        assert_eq!(w.reasons.len(), 1, "not behind the queue: out of it: {w:?}");
        assert!(matches!(
            &w.reasons[0],
            WaitReason::KeyFull {
                admitted: 2,
                limit: 2,
                ..
            }
        ));
        assert_eq!(
            w.summary,
            "concurrency key \"customer:42\" is full (2/2), held by task(s) 3, 4"
        );
        assert_eq!(w.estimated_start_us, Some(NOW + 6_000_000));
    }

    #[test]
    fn a_task_no_agent_can_take_names_the_closest_and_what_they_lack() {
        let agents = [
            agent(1, &["resize"], &["eu", "gpu"], 0, AgentStatus::Online),
            agent(2, &["resize"], &["eu"], 0, AgentStatus::Online),
            agent(3, &["echo"], &[], 0, AgentStatus::Online),
        ];
        let w = explain_t(
            &task("resize", &["gpu", "us"]),
            &agents,
            Ahead::default(),
            0.0,
            None,
            NOW,
        );
        let WaitReason::NoAgent { closest, .. } = &w.reasons[0] else {
            panic!("{w:?}")
        };
        assert_eq!(closest[0].name, "a1");
        assert_eq!(closest[0].missing, vec!["lacks label \"us\""]);
        assert!(
            w.summary.contains("no online agent handles \"resize\""),
            "{}",
            w.summary
        );
        assert_eq!(w.estimated_start_us, None);
        // An offline agent that could take it is named as such.
        let agents = [agent(
            1,
            &["resize"],
            &["gpu", "us"],
            0,
            AgentStatus::Offline,
        )];
        let w = explain_t(
            &task("resize", &["gpu", "us"]),
            &agents,
            Ahead::default(),
            0.0,
            None,
            NOW,
        );
        assert!(w.summary.contains("is offline"), "{}", w.summary);
    }

    #[test]
    fn full_agents_and_the_queue_ahead_are_reasons_with_an_estimate() {
        let agents = [
            agent(1, &["echo"], &[], 2, AgentStatus::Online),
            agent(2, &["echo"], &[], 2, AgentStatus::Online),
        ];
        let ahead = Ahead {
            all: 30,
            same_type: 19,
            capped: false,
        };
        let w = explain_t(&task("echo", &[]), &agents, ahead, 5.5, Some(10.0), NOW);
        assert_eq!(
            w.reasons[0],
            WaitReason::AgentsFull {
                agents: 2,
                running: 4,
                capacity: 4
            }
        );
        assert!(matches!(
            w.reasons[1],
            WaitReason::QueuedBehind {
                ahead: 30,
                ahead_same_type: 19
            }
        ));
        assert_eq!(
            w.estimated_start_us,
            Some(NOW + 2_000_000),
            "20 tasks at 10/s"
        );
        assert!(w.summary.contains("L = 1"), "{}", w.summary);
    }

    #[test]
    fn a_delayed_task_waits_for_its_time_or_its_backoff() {
        let agents = [agent(1, &["echo"], &[], 0, AgentStatus::Online)];
        let mut t = task("echo", &[]);
        t.run_after_us = NOW + 5_000_000;
        let w = explain_t(&t, &agents, Ahead::default(), 0.0, None, NOW);
        assert_eq!(
            w.reasons[0],
            WaitReason::NotBefore {
                until_us: NOW + 5_000_000,
                cause: "run_after".into()
            }
        );
        assert_eq!(w.estimated_start_us, Some(NOW + 5_000_000));
        t.attempts = 1;
        let w = explain_t(&t, &agents, Ahead::default(), 0.0, None, NOW);
        assert!(w.summary.contains("backoff"), "{}", w.summary);
    }

    #[test]
    fn a_task_with_a_free_slot_and_nothing_ahead_is_ready() {
        let agents = [agent(1, &["echo"], &[], 1, AgentStatus::Online)];
        let w = explain_t(
            &task("echo", &[]),
            &agents,
            Ahead::default(),
            0.0,
            None,
            NOW,
        );
        assert_eq!(w.reasons, vec![WaitReason::Ready { free_slots: 1 }]);
        assert_eq!(w.estimated_start_us, Some(NOW));
    }

    #[test]
    fn a_submit_no_registered_agent_could_take_is_warned() {
        let agents = [
            agent(1, &["resize"], &["eu"], 0, AgentStatus::Offline),
            agent(2, &["echo"], &[], 0, AgentStatus::Revoked),
        ];
        assert_eq!(
            unreachable("resize", &["eu".into()], &agents),
            None,
            "offline may return"
        );
        assert!(unreachable("resize", &["gpu".into()], &agents)
            .is_some_and(|w| w.contains("labels gpu")));
        assert!(unreachable("echo", &[], &agents).is_some_and(|w| w.contains("handles \"echo\"")));
    }
}
