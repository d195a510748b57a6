//! The in-memory model of the queue and one case that drives the store and
//! the model side by side.

mod checks;
mod step;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use drover_engine::domain::AgentSpec;
use drover_engine::lifecycle::MAX_BACKOFF_MS;
use drover_engine::store::{Claim, QueueStore, Registration, Sweep, TaskFilter};
use drover_engine::{Store, StoreError};
use drover_protocol::agent::{HeartbeatResponse, Lease};
use drover_protocol::api::{AgentStatus, Stats, TaskStatus};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use super::commands::Pick;
use super::{DRAIN_SURVIVES_OFFLINE, KINDS, RENEW_BELOW, TTL};

#[derive(Debug, Clone, Copy, PartialEq)]
enum RunAfter {
    At(i64),
    /// A retry's backoff, drawn by the store within these bounds.
    Between(i64, i64),
}

#[derive(Debug, Clone, Copy)]
struct MLease {
    token: i64,
    agent: usize,
    started: i64,
    expires: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct MTask {
    id: i64,
    pub(crate) ty: usize,
    pub(crate) gpu: bool,
    priority: f64,
    rank: f64,
    status: TaskStatus,
    attempts: i64,
    max_attempts: i64,
    timeout_ms: i64,
    backoff_ms: i64,
    run_after: RunAfter,
    lease: Option<MLease>,
    claims: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AState {
    Online,
    Draining,
    Offline,
    Deregistered,
    Revoked,
}

impl AState {
    fn status(self) -> AgentStatus {
        match self {
            AState::Online => AgentStatus::Online,
            AState::Draining => AgentStatus::Draining,
            AState::Offline => AgentStatus::Offline,
            AState::Deregistered => AgentStatus::Deregistered,
            AState::Revoked => AgentStatus::Revoked,
        }
    }
}

#[derive(Debug, Clone)]
struct MAgent {
    id: i64,
    /// Its session token's hash, to look it up by.
    session: String,
    /// Its key's hash, to resume it by.
    key: String,
    kind: usize,
    capacity: i64,
    state: AState,
    /// The operator's last word: drained (or re-enabled).
    drained: bool,
    restarts: usize,
    last_heartbeat: i64,
}

/// How an attempt ends in the model (`lifecycle::AttemptEnd` without the
/// payloads).
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Succeeded,
    Failed { retryable: bool },
    Released,
    Lost,
    TimedOut,
    Cancelled,
}

/// Why a sweep ends a running attempt (see `store::SweptBecause`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Swept {
    Expired,
    Offline,
    Deregistered,
    Restarted,
    Revoked,
}

/// A claim as the model predicts it.
#[derive(Debug, PartialEq)]
struct Planned {
    tasks: Vec<i64>,
    running: i64,
    capacity: i64,
    drain: bool,
}

/// One case: the store, the model, and the clock both share.
pub(crate) struct Case<'a> {
    store: &'a Store,
    types: [String; 3],
    now: i64,
    base: Stats,
    tasks: Vec<MTask>,
    by_id: HashMap<i64, usize>,
    agents: Vec<MAgent>,
    /// Every lease handed out, in order: (task index, token).
    issued: Vec<(usize, i64)>,
}

pub(crate) type Step = Result<(), TestCaseError>;

thread_local! {
    /// What this backend's sequences exercised (shrinking included),
    /// printed with `DROVER_MODEL_COVERAGE=1 … -- --nocapture`: a model
    /// test is only as good as what its generator reaches.
    static COVERAGE: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

fn covered(what: impl Into<String>) {
    COVERAGE.with(|c| *c.borrow_mut().entry(what.into()).or_default() += 1);
}

/// What this thread's sequences exercised, one line each.
pub(crate) fn covered_report() -> String {
    COVERAGE.with(|c| format!("{:#?}", c.borrow()))
}

pub(crate) fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn db<T>(what: &str, r: Result<T, StoreError>) -> Result<T, TestCaseError> {
    r.map_err(|e| fail(format!("{what}: unexpected store error: {e}")))
}

/// The latest time any case reached.
static CLOCK: AtomicI64 = AtomicI64::new(0);

/// Each case's clock starts after the last one's ended (and not before the
/// wall clock), so no case meets timestamps from its future.
fn case_start() -> i64 {
    let wall = drover_engine::time::now_us();
    wall.max(CLOCK.load(Ordering::Relaxed) + 1_000_000)
}

fn next_case() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl<'a> Case<'a> {
    /// Clears what earlier cases left (a failed case stops midway), then
    /// registers the scenario's agents.
    pub(crate) async fn start(
        store: &'a Store,
        agents: &[(usize, i64)],
    ) -> Result<Case<'a>, TestCaseError> {
        let now = case_start();
        for status in [TaskStatus::Queued, TaskStatus::Running] {
            let filter = TaskFilter {
                statuses: vec![status],
                limit: 100_000,
                ..TaskFilter::default()
            };
            for t in db("list leftovers", store.list_tasks(&filter).await)? {
                match store.cancel_task(t.id, now).await {
                    Ok(_) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(fail(format!("cancel leftover {}: {e}", t.id))),
                }
            }
        }
        for a in db("list agents", store.list_agents().await)? {
            if !matches!(a.status, AgentStatus::Deregistered | AgentStatus::Revoked) {
                db(
                    "deregister leftover",
                    store.deregister_agent(a.id, now).await,
                )?;
            }
        }
        let n = next_case();
        let types = [format!("m{n}-a"), format!("m{n}-b"), format!("m{n}-c")];
        let mut case = Case {
            store,
            types,
            now,
            base: db("stats", store.stats().await)?,
            tasks: Vec::new(),
            by_id: HashMap::new(),
            agents: Vec::new(),
            issued: Vec::new(),
        };
        for (i, &(kind, capacity)) in agents.iter().enumerate() {
            let spec = AgentSpec {
                name: format!("m{n}-{i}"),
                hostname: "model".into(),
                version: "test".into(),
                task_types: KINDS[kind]
                    .types
                    .iter()
                    .map(|&t| case.types[t].clone())
                    .collect(),
                labels: KINDS[kind].labels.iter().map(|l| l.to_string()).collect(),
                capacity,
            };
            let session = format!("m{n}-{i}-session");
            let key = format!("m{n}-{i}-key");
            let reg = Registration {
                spec: &spec,
                session_hash: &session,
                key_hash: Some(&key),
                enrollment_id: None,
                resuming: &[],
            };
            let id = db("register", store.register_agent(&reg, now).await)?.agent_id;
            case.agents.push(MAgent {
                id,
                session,
                key,
                kind,
                capacity,
                state: AState::Online,
                drained: false,
                restarts: 0,
                last_heartbeat: now,
            });
        }
        Ok(case)
    }

    fn running_of(&self, a: usize) -> i64 {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Running && t.lease.map(|l| l.agent) == Some(a))
            .count() as i64
    }

    /// The leases agent `a` holds, by task id.
    fn held_by(&self, a: usize) -> Vec<(usize, i64)> {
        let mut held: Vec<(usize, i64)> = self
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.lease {
                Some(l) if l.agent == a && t.status == TaskStatus::Running => Some((i, l.token)),
                _ => None,
            })
            .collect();
        held.sort_by_key(|&(i, _)| self.tasks[i].id);
        held
    }

    fn resolve(&self, a: usize, pick: Pick) -> Option<Lease> {
        let lease = |(i, token): (usize, i64)| Lease {
            task_id: self.tasks[i].id,
            lease_token: token,
        };
        let any = |ix: Index| {
            (!self.issued.is_empty()).then(|| lease(self.issued[ix.index(self.issued.len())]))
        };
        match pick {
            Pick::Own(ix) => {
                let held = self.held_by(a);
                (!held.is_empty()).then(|| lease(held[ix.index(held.len())]))
            }
            Pick::Any(ix) => any(ix),
        }
    }

    /// Agent `a` heartbeats with `leases`: checks the answer, renews in the
    /// model what the store renews.
    async fn heartbeat(&mut self, a: usize, leases: &[Lease]) -> Step {
        let store = self.store;
        let got = db(
            "heartbeat",
            store
                .heartbeat(self.agents[a].id, leases, self.now, TTL, RENEW_BELOW)
                .await,
        )?;
        // The answer names tasks, not leases: a task is to stop when none
        // of the leases listed for it is current and the agent's.
        let mut held = HashSet::new();
        for l in leases {
            let now = self.now;
            let current = self.by_id.get(&l.task_id).and_then(|&i| {
                let t = &mut self.tasks[i];
                let timeout = t.timeout_ms * 1000;
                t.lease
                    .as_mut()
                    .filter(|m| {
                        t.status == TaskStatus::Running && m.agent == a && m.token == l.lease_token
                    })
                    .map(|m| (m, timeout))
            });
            if let Some((m, timeout)) = current {
                held.insert(l.task_id);
                let until = (now + TTL).min(m.started + timeout);
                covered("hb held");
                if m.expires < (now + RENEW_BELOW).min(until) {
                    covered("hb renew");
                    m.expires = until;
                }
            }
        }
        let cancel: Vec<i64> = leases
            .iter()
            .map(|l| l.task_id)
            .filter(|id| !held.contains(id))
            .collect();
        let ag = &mut self.agents[a];
        ag.last_heartbeat = self.now;
        if ag.state == AState::Offline {
            ag.state = if ag.drained && DRAIN_SURVIVES_OFFLINE {
                AState::Draining
            } else {
                AState::Online
            };
        }
        let expected = HeartbeatResponse {
            cancel,
            drain: ag.state != AState::Online,
        };
        prop_assert_eq!(got, expected, "heartbeat of agent {}", a);
        Ok(())
    }

    /// Every lease agent `a` holds, as it would heartbeat them.
    fn own_leases(&self, a: usize) -> Vec<Lease> {
        self.held_by(a)
            .into_iter()
            .map(|(i, token)| Lease {
                task_id: self.tasks[i].id,
                lease_token: token,
            })
            .collect()
    }

    /// The leases `picks` name, an `Own` pick preferring a lease not named
    /// yet (a batch repeats a lease only when the agent holds no other).
    fn resolve_all(&self, a: usize, picks: &[Pick]) -> Vec<Lease> {
        let mut out: Vec<Lease> = Vec::new();
        for &pick in picks {
            let fresh: Vec<Lease> = self
                .own_leases(a)
                .into_iter()
                .filter(|l| !out.contains(l))
                .collect();
            let lease = match pick {
                Pick::Own(ix) if !fresh.is_empty() => Some(fresh[ix.index(fresh.len())]),
                _ => self.resolve(a, pick),
            };
            out.extend(lease);
        }
        out
    }

    fn agent(&self, ix: Index) -> usize {
        ix.index(self.agents.len())
    }

    /// Queued tasks in claim order: highest rank, then lowest id.
    fn queue_order(&self) -> Vec<usize> {
        let mut queued: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].status == TaskStatus::Queued)
            .collect();
        queued.sort_by(|&a, &b| {
            let (a, b) = (&self.tasks[a], &self.tasks[b]);
            b.rank.total_cmp(&a.rank).then(a.id.cmp(&b.id))
        });
        queued
    }

    fn plan_claim(&self, a: usize, max: i64) -> Result<(Vec<usize>, Planned), TestCaseError> {
        let agent = &self.agents[a];
        let running = self.running_of(a);
        let mut planned = Planned {
            tasks: vec![],
            running,
            capacity: agent.capacity,
            drain: agent.state != AState::Online,
        };
        let want = max.min(agent.capacity - running);
        if planned.drain || want <= 0 {
            return Ok((vec![], planned));
        }
        let mut picked = Vec::new();
        for i in self.queue_order() {
            let t = &self.tasks[i];
            let due = match t.run_after {
                RunAfter::At(at) => at <= self.now,
                RunAfter::Between(..) => return Err(fail("model: unresolved run_after")),
            };
            if due && KINDS[agent.kind].takes(t) && (picked.len() as i64) < want {
                picked.push(i);
            }
        }
        planned.tasks = picked.iter().map(|&i| self.tasks[i].id).collect();
        planned.running += picked.len() as i64;
        Ok((picked, planned))
    }

    /// Checks one claim against the model's plan and records its leases.
    fn take_claim(&mut self, a: usize, max: i64, got: &Claim) -> Step {
        let (picked, planned) = self.plan_claim(a, max)?;
        covered(format!(
            "claim tasks={} drain={}",
            picked.len().min(2),
            planned.drain
        ));
        let seen = Planned {
            tasks: got.tasks.iter().map(|t| t.task_id).collect(),
            running: got.running,
            capacity: got.capacity,
            drain: got.drain,
        };
        prop_assert_eq!(&seen, &planned, "claim of agent {} (max {})", a, max);
        let agent = &self.agents[a];
        for (&i, asg) in picked.iter().zip(&got.tasks) {
            let t = &mut self.tasks[i];
            prop_assert!(KINDS[agent.kind].takes(t), "a task the agent does not take");
            t.status = TaskStatus::Running;
            t.attempts += 1;
            t.claims += 1;
            t.lease = Some(MLease {
                token: asg.lease_token,
                agent: a,
                started: self.now,
                expires: (self.now + TTL).min(self.now + t.timeout_ms * 1000),
            });
            prop_assert_eq!(
                (asg.attempt as i64, asg.max_attempts as i64, asg.priority),
                (t.attempts, t.max_attempts, t.priority),
                "assignment of task {}",
                t.id
            );
            prop_assert_eq!(&asg.task_type, &self.types[t.ty]);
            prop_assert!(
                !self.issued.contains(&(i, asg.lease_token)),
                "task {} claimed again under an old lease token",
                asg.task_id
            );
            self.issued.push((i, asg.lease_token));
        }
        Ok(())
    }

    /// Ends task `i`'s attempt as `lifecycle::decide` would; returns its
    /// new status.
    fn end(&mut self, i: usize, end: End) -> TaskStatus {
        let now = self.now;
        let t = &mut self.tasks[i];
        let retries_left = t.attempts < t.max_attempts;
        t.lease = None;
        let backoff = |t: &MTask| {
            if t.backoff_ms <= 0 {
                return RunAfter::At(now);
            }
            let exp = (t.attempts - 1).clamp(0, 30) as u32;
            let ceiling = t.backoff_ms.saturating_mul(1 << exp).min(MAX_BACKOFF_MS);
            RunAfter::Between(now + ceiling / 2 * 1000, now + ceiling * 1000)
        };
        t.status = match end {
            End::Succeeded => TaskStatus::Succeeded,
            End::Cancelled => TaskStatus::Cancelled,
            End::Released => {
                t.attempts -= 1;
                t.run_after = RunAfter::At(now);
                TaskStatus::Queued
            }
            End::Lost if retries_left => {
                t.run_after = RunAfter::At(now);
                TaskStatus::Queued
            }
            End::Failed { retryable: true } | End::TimedOut if retries_left => {
                t.run_after = backoff(t);
                TaskStatus::Queued
            }
            _ => TaskStatus::Failed,
        };
        t.status
    }

    /// Ends the running attempts `tasks` for a sweep; returns (requeued,
    /// failed).
    fn sweep(&mut self, tasks: Vec<usize>, why: Swept) -> (u64, u64) {
        let (mut requeued, mut failed) = (0, 0);
        for i in tasks {
            let Some(lease) = self.tasks[i].lease else {
                continue;
            };
            let end = if self.now >= lease.started + self.tasks[i].timeout_ms * 1000 {
                End::TimedOut
            } else if why == Swept::Deregistered {
                End::Released
            } else {
                End::Lost
            };
            covered(format!("sweep {why:?} {end:?}"));
            match self.end(i, end) {
                TaskStatus::Queued => requeued += 1,
                TaskStatus::Failed => failed += 1,
                _ => {}
            }
        }
        (requeued, failed)
    }

    fn expect_sweep(got: &Sweep, offline: &[i64], counts: (u64, u64), what: &str) -> Step {
        let mut agents = got.agents_offline.clone();
        agents.sort_unstable();
        prop_assert_eq!(
            (agents.as_slice(), got.tasks_requeued, got.tasks_failed),
            (offline, counts.0, counts.1),
            "{}",
            what
        );
        prop_assert!(got.runs.is_empty(), "{}: runs {:?}", what, got.runs);
        Ok(())
    }
}
