//! One command, on the store and on the model.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use drover_engine::domain::{AgentSpec, TaskSpec};
use drover_engine::store::{Applied, QueueStore, Registration};
use drover_engine::StoreError;
use drover_protocol::agent::{Lease, Outcome, TaskResult};
use drover_protocol::api::{NewTask, TaskStatus};
use proptest::prelude::*;
use serde_json::json;

use super::super::commands::{Cmd, Out, Pick};
use super::super::{
    BACKOFF_MS, DELAY_US, KINDS, LONG_TIMEOUT_MS, SCHED, SHORT_TIMEOUT_MS, SILENCE, TTL,
};
use super::*;

impl Case<'_> {
    /// Runs `cmd` on the store and on the model; checks what it answered.
    pub(crate) async fn step(&mut self, cmd: &Cmd) -> Step {
        let store = self.store;
        match cmd {
            Cmd::Submit(news) => {
                let specs = news
                    .iter()
                    .map(|n| {
                        TaskSpec::parse(
                            NewTask {
                                task_type: self.types[n.ty].clone(),
                                urgency: Some(n.urgency),
                                max_attempts: Some(n.max_attempts),
                                timeout_ms: Some(if n.short_timeout {
                                    SHORT_TIMEOUT_MS
                                } else {
                                    LONG_TIMEOUT_MS
                                }),
                                retry_backoff_ms: Some(if n.backoff { BACKOFF_MS } else { 0 }),
                                run_after_us: n.delayed.then_some(self.now + DELAY_US),
                                required_labels: if n.gpu { vec!["gpu".into()] } else { vec![] },
                                payload: json!({}),
                                ..NewTask::default()
                            },
                            &SCHED.weights,
                            |_| true,
                        )
                        .map_err(|e| fail(format!("spec: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let got = db("submit", store.submit(&specs, &SCHED, self.now).await)?;
                prop_assert_eq!(got.len(), specs.len());
                for (spec, s) in specs.iter().zip(&got) {
                    prop_assert!(s.created && s.status == TaskStatus::Queued);
                    prop_assert!(!self.by_id.contains_key(&s.id), "id {} reused", s.id);
                    let ty = self.types.iter().position(|t| *t == spec.task_type);
                    self.by_id.insert(s.id, self.tasks.len());
                    self.tasks.push(MTask {
                        id: s.id,
                        ty: ty.unwrap_or(2),
                        gpu: !spec.required_labels.is_empty(),
                        priority: spec.priority,
                        rank: SCHED.rank(spec.priority, self.now),
                        status: TaskStatus::Queued,
                        attempts: 0,
                        max_attempts: spec.max_attempts,
                        timeout_ms: spec.timeout_ms,
                        backoff_ms: spec.retry_backoff_ms,
                        run_after: RunAfter::At(spec.run_after_us.unwrap_or(self.now)),
                        lease: None,
                        claims: 0,
                    });
                }
            }
            Cmd::Claim { agent, max } => {
                let a = self.agent(*agent);
                let got = db(
                    "claim",
                    store.claim(self.agents[a].id, *max, self.now, TTL).await,
                )?;
                self.take_claim(a, *max, &got)?;
            }
            Cmd::ClaimGroup { kind, first, maxes } => {
                let mut members: Vec<usize> = (0..self.agents.len())
                    .filter(|&a| self.agents[a].kind == *kind)
                    .collect();
                if members.is_empty() {
                    return Ok(());
                }
                let shift = first.index(members.len());
                members.rotate_left(shift);
                let asks: Vec<(i64, i64)> = members
                    .iter()
                    .enumerate()
                    .map(|(n, &a)| (self.agents[a].id, maxes[n % maxes.len()]))
                    .collect();
                let got = db("claim_group", store.claim_group(&asks, self.now, TTL).await)?;
                prop_assert_eq!(got.len(), members.len());
                // Least loaded first (as the store counts now), ties in the
                // order given; each then claims as `claim` would.
                let load = |a: usize| self.running_of(a) as f64 / self.agents[a].capacity as f64;
                let mut order: Vec<usize> = (0..members.len()).collect();
                order.sort_by(|&x, &y| {
                    load(members[x])
                        .total_cmp(&load(members[y]))
                        .then(x.cmp(&y))
                });
                for n in order {
                    self.take_claim(members[n], asks[n].1, &got[n])?;
                }
            }
            Cmd::Heartbeat { agent, all, extra } => {
                let a = self.agent(*agent);
                let mut leases: Vec<Lease> = if *all { self.own_leases(a) } else { vec![] };
                leases.extend(self.resolve_all(a, extra));
                self.heartbeat(a, &leases).await?;
            }
            Cmd::HeartbeatAll => {
                for a in 0..self.agents.len() {
                    if !matches!(self.agents[a].state, AState::Deregistered | AState::Revoked) {
                        let leases = self.own_leases(a);
                        self.heartbeat(a, &leases).await?;
                    }
                }
            }
            Cmd::Complete { agent, results } => {
                // Sent by an agent holding leases when there is one.
                let holders: Vec<usize> = (0..self.agents.len())
                    .filter(|&a| self.running_of(a) > 0)
                    .collect();
                let a = if holders.is_empty() {
                    self.agent(*agent)
                } else {
                    holders[agent.index(holders.len())]
                };
                let picks: Vec<Pick> = results.iter().map(|&(p, _)| p).collect();
                let sent: Vec<(Lease, Out)> = self
                    .resolve_all(a, &picks)
                    .into_iter()
                    .zip(results.iter().map(|&(_, out)| out))
                    .collect();
                if sent.is_empty() {
                    return Ok(());
                }
                let batch: Vec<TaskResult> = sent
                    .iter()
                    .map(|(l, out)| TaskResult {
                        task_id: l.task_id,
                        lease_token: l.lease_token,
                        outcome: match out {
                            Out::Succeed => Outcome::Succeeded { output: json!(1) },
                            Out::Fail | Out::FailFinal => Outcome::Failed {
                                error: "boom".into(),
                                retryable: matches!(out, Out::Fail),
                            },
                            Out::Release => Outcome::Released {
                                reason: "stopping".into(),
                            },
                        },
                        started_at_us: None,
                        finished_at_us: None,
                    })
                    .collect();
                let got = db(
                    "complete",
                    store.complete(self.agents[a].id, &batch, self.now).await,
                )?;
                // Which leases are current is read before the batch applies.
                let current: HashMap<(i64, i64), usize> = sent
                    .iter()
                    .filter_map(|(l, _)| {
                        let i = *self.by_id.get(&l.task_id)?;
                        let t = &self.tasks[i];
                        let m = t.lease.filter(|m| {
                            t.status == TaskStatus::Running && m.token == l.lease_token
                        })?;
                        Some(((l.task_id, l.lease_token), m.agent))
                    })
                    .collect();
                let mut seen = HashSet::new();
                let mut expected = Vec::new();
                for (l, out) in &sent {
                    let key = (l.task_id, l.lease_token);
                    expected.push(match current.get(&key) {
                        Some(&holder) if holder != a => Applied::NotHolder,
                        Some(_) if seen.insert(key) => {
                            let end = match out {
                                Out::Succeed => End::Succeeded,
                                Out::Fail => End::Failed { retryable: true },
                                Out::FailFinal => End::Failed { retryable: false },
                                Out::Release => End::Released,
                            };
                            Applied::Yes(self.end(self.by_id[&l.task_id], end))
                        }
                        _ => Applied::Stale,
                    });
                }
                for e in &expected {
                    covered(format!("result {e:?}"));
                }
                prop_assert_eq!(&got.applied, &expected, "results from agent {}", a);
                prop_assert!(got.runs.is_empty());
            }
            Cmd::Cancel(ix) => {
                if self.tasks.is_empty() {
                    return Ok(());
                }
                let i = ix.index(self.tasks.len());
                let got = store.cancel_task(self.tasks[i].id, self.now).await;
                match (self.tasks[i].status, got) {
                    (TaskStatus::Queued, Ok(TaskStatus::Cancelled)) => {
                        self.tasks[i].status = TaskStatus::Cancelled;
                    }
                    (TaskStatus::Running, Ok(TaskStatus::Cancelled)) => {
                        covered("cancel running");
                        self.end(i, End::Cancelled);
                    }
                    (s, Err(StoreError::Conflict(_))) if s.is_terminal() => {}
                    (s, got) => {
                        return Err(fail(format!(
                            "cancel of a {} task answered {got:?}",
                            s.as_str()
                        )))
                    }
                }
            }
            Cmd::ExpireLeases => {
                let got = db("expire_leases", store.expire_leases(self.now).await)?;
                let now = self.now;
                let due: Vec<usize> = (0..self.tasks.len())
                    .filter(|&i| {
                        let t = &self.tasks[i];
                        t.status == TaskStatus::Running && t.lease.is_some_and(|l| l.expires <= now)
                    })
                    .collect();
                let counts = self.sweep(due, Swept::Expired);
                Self::expect_sweep(&got, &[], counts, "expire_leases")?;
            }
            Cmd::Advance(j) => {
                self.now += j.us();
                CLOCK.fetch_max(self.now, Ordering::Relaxed);
            }
            Cmd::MarkSilentOffline => {
                let since = self.now - SILENCE;
                let got = db(
                    "mark_silent_agents_offline",
                    store.mark_silent_agents_offline(since, self.now).await,
                )?;
                let mut offline = Vec::new();
                let mut held = Vec::new();
                for a in 0..self.agents.len() {
                    let ag = &mut self.agents[a];
                    let live = matches!(ag.state, AState::Online | AState::Draining);
                    if live && ag.last_heartbeat < since {
                        ag.state = AState::Offline;
                        offline.push(ag.id);
                        held.extend(self.held_by(a).into_iter().map(|(i, _)| i));
                    }
                }
                offline.sort_unstable();
                let counts = self.sweep(held, Swept::Offline);
                Self::expect_sweep(&got, &offline, counts, "mark_silent_agents_offline")?;
            }
            Cmd::Drain { agent, on } => {
                let a = self.agent(*agent);
                let got = store.set_agent_draining(self.agents[a].id, *on).await;
                let ag = &mut self.agents[a];
                match (ag.state, got) {
                    (AState::Online | AState::Draining, Ok(())) => {
                        ag.drained = *on;
                        ag.state = if *on {
                            AState::Draining
                        } else {
                            AState::Online
                        };
                    }
                    (
                        AState::Offline | AState::Deregistered | AState::Revoked,
                        Err(StoreError::Conflict(_)),
                    ) => {}
                    (s, got) => {
                        return Err(fail(format!(
                            "set_agent_draining({on}) of a {s:?} agent answered {got:?}"
                        )))
                    }
                }
            }
            Cmd::Deregister(ix) => {
                let a = self.agent(*ix);
                if self.agents[a].state == AState::Revoked {
                    // Only the agent's own session deregisters it, and a
                    // revoked agent's session is refused.
                    return Ok(());
                }
                let got = db(
                    "deregister",
                    store.deregister_agent(self.agents[a].id, self.now).await,
                )?;
                self.agents[a].state = AState::Deregistered;
                let held = self.held_by(a).into_iter().map(|(i, _)| i).collect();
                let counts = self.sweep(held, Swept::Deregistered);
                Self::expect_sweep(&got, &[], counts, "deregister_agent")?;
            }
            Cmd::Restart { agent, keep } => {
                let a = self.agent(*agent);
                let keep = self.resolve_all(a, keep);
                let ag = &mut self.agents[a];
                ag.restarts += 1;
                let session = format!("{}-r{}", ag.key, ag.restarts);
                let kind = &KINDS[ag.kind];
                let spec = AgentSpec {
                    name: format!("{}-r", ag.key),
                    hostname: "model".into(),
                    version: "test".into(),
                    task_types: kind.types.iter().map(|&t| self.types[t].clone()).collect(),
                    labels: kind.labels.iter().map(|l| l.to_string()).collect(),
                    capacity: ag.capacity,
                };
                let reg = Registration {
                    spec: &spec,
                    session_hash: &session,
                    key_hash: Some(&ag.key),
                    enrollment_id: None,
                    resuming: &keep,
                };
                let got = store.register_agent(&reg, self.now).await;
                if ag.state == AState::Revoked {
                    prop_assert!(
                        matches!(got, Err(StoreError::Revoked(_))),
                        "a revoked agent's key was taken: {:?}",
                        got
                    );
                    return Ok(());
                }
                let got = db("register (resume)", got)?;
                ag.session = session;
                ag.last_heartbeat = self.now;
                let drained = if DRAIN_SURVIVES_OFFLINE {
                    ag.drained
                } else {
                    ag.state == AState::Draining
                };
                ag.state = if drained {
                    AState::Draining
                } else {
                    AState::Online
                };
                prop_assert_eq!((got.agent_id, got.resumed), (ag.id, true));
                let gone: Vec<usize> = self
                    .held_by(a)
                    .into_iter()
                    .filter(|&(i, token)| {
                        !keep.contains(&Lease {
                            task_id: self.tasks[i].id,
                            lease_token: token,
                        })
                    })
                    .map(|(i, _)| i)
                    .collect();
                let counts = self.sweep(gone, Swept::Restarted);
                Self::expect_sweep(&got.sweep, &[], counts, "register (resume)")?;
            }
            Cmd::Revoke(ix) => {
                let a = self.agent(*ix);
                let got = db(
                    "revoke_agent",
                    store.revoke_agent(self.agents[a].id, self.now).await,
                )?;
                self.agents[a].state = AState::Revoked;
                let held = self.held_by(a).into_iter().map(|(i, _)| i).collect();
                let counts = self.sweep(held, Swept::Revoked);
                Self::expect_sweep(&got, &[], counts, "revoke_agent")?;
            }
        }
        Ok(())
    }
}
