//! The queue against a model of its contract. Proptest generates sequences
//! of submits, claims, group claims, heartbeats, results (current, stale,
//! repeated and another agent's leases), cancels, lease expiries, silence
//! sweeps, drains, restarts (resuming with a key), revocations and
//! deregistrations, with time jumps between them that cross the renewal
//! threshold, the lease, short tasks' timeouts and minutes of aging. Time
//! is only ever the `now_us` passed in: no sleeps. Each sequence runs on a
//! real store (a SQLite file, a PostgreSQL database) and on an in-memory
//! model; after every command the two are compared: what the call answered,
//! every task's status, attempts, holder, lease and `run_after`, the order
//! of the queue, and every agent's status and running count (≤ capacity).
//! At the end of a sequence the stats and each task's attempt rows are
//! compared too. A failure shrinks to a minimal sequence.
//!
//! What the model predicts exactly, and what it only bounds:
//! - Claim order: aging is a rank fixed at submit (`Scheduling::rank`), so
//!   the model sorts by the same `f64` the store does and checks the exact
//!   tasks and order of every claim and group claim (highest rank first,
//!   then lowest id; in a group, the least-loaded agent first).
//! - Retry backoff is random (equal jitter): a retried task's `run_after`
//!   must lie in `[now + c/2, now + c]`; the model then follows the store's
//!   draw.
//!
//! Not modelled: idempotency keys, workflow runs, concurrent callers.
//!
//! Per backend it runs `PROPTEST_CASES` sequences (default 64) of up to
//! `DROVER_MODEL_STEPS` commands (default 40), well under a minute. For a
//! longer search:
//! `PROPTEST_CASES=2000 DROVER_MODEL_STEPS=150 cargo test -p drover-engine --test store_model`
//! (`PROPTEST_RNG_SEED=n` replays a run; `DROVER_MODEL_COVERAGE=1` with
//! `-- --nocapture` prints what the sequences exercised). The cases of one
//! run share one database: each names its own task types and starts by
//! cancelling what an earlier case left unfinished and deregistering its
//! agents.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use drover_engine::domain::{AgentSpec, PriorityWeights, Scheduling, TaskSpec};
use drover_engine::lifecycle::MAX_BACKOFF_MS;
use drover_engine::store::{Applied, Claim, QueueStore, Registration, Sweep, TaskFilter};
use drover_engine::{Store, StoreError};
use drover_protocol::agent::{HeartbeatResponse, Lease, Outcome, TaskResult};
use drover_protocol::api::{AgentStatus, NewTask, Stats, TaskStatus, TaskView};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::json;

#[macro_use]
mod support;

const DEFAULT_CASES: u32 = 64;
const DEFAULT_STEPS: usize = 40;

/// Lease length; a heartbeat renews a lease with less than half of it left.
const TTL: i64 = 10_000_000;
const RENEW_BELOW: i64 = TTL / 2;
/// An agent silent this long goes offline at the next silence sweep.
const SILENCE: i64 = 8_000_000;
/// A short task times out before its lease would run out (the lease is
/// capped at the timeout); a long one never does here.
const SHORT_TIMEOUT_MS: i64 = 4_000;
const LONG_TIMEOUT_MS: i64 = 600_000;
const BACKOFF_MS: i64 = 2_000;
/// How far in the future a delayed task may first run.
const DELAY_US: i64 = 3_000_000;

const SCHED: Scheduling = Scheduling {
    weights: PriorityWeights {
        urgency: 1.0,
        time_sensitivity: 1.0,
        importance: 1.0,
    },
    aging_points_per_minute: 1.0,
    max_for_each_items: drover_protocol::limits::DEFAULT_MAX_FOR_EACH_ITEMS,
};

/// What agents of one kind take: task types (indexes into a case's three
/// types; type 2 has no agent and stays queued) and labels.
struct Kind {
    types: &'static [usize],
    labels: &'static [&'static str],
}

impl Kind {
    fn takes(&self, t: &MTask) -> bool {
        self.types.contains(&t.ty) && (!t.gpu || self.labels.contains(&"gpu"))
    }
}

const KINDS: [Kind; 2] = [
    Kind {
        types: &[0],
        labels: &[],
    },
    Kind {
        types: &[0, 1],
        labels: &["gpu"],
    },
];

/// Issue 18: "a drained agent stays drained across offline/online". The
/// model expects it: an agent drained before it went silent (or restarted,
/// or deregistered) is draining again, not online, when it comes back.
const DRAIN_SURVIVES_OFFLINE: bool = true;

// ---------------------------------------------------------------- commands

#[derive(Debug, Clone)]
struct NewT {
    ty: usize,
    /// Requires the label `gpu`.
    gpu: bool,
    urgency: i64,
    max_attempts: i64,
    short_timeout: bool,
    backoff: bool,
    delayed: bool,
}

/// A lease named in a heartbeat or a result.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// One the sending agent holds now (none if it holds none).
    Own(Index),
    /// Any lease ever handed out in the case: current, stale or another
    /// agent's.
    Any(Index),
}

#[derive(Debug, Clone, Copy)]
enum Out {
    Succeed,
    Fail,
    FailFinal,
    Release,
}

/// Time jumps: a tick, less than the renewal threshold, past it, past a
/// whole lease (and a short task's timeout), and over a minute (a point of
/// aging).
#[derive(Debug, Clone, Copy)]
enum Jump {
    Tick,
    Short,
    PastRenew,
    PastLease,
    Minutes,
}

impl Jump {
    fn us(self) -> i64 {
        match self {
            Jump::Tick => 1_000,
            Jump::Short => 2_500_000,
            Jump::PastRenew => 6_000_000,
            Jump::PastLease => 11_000_000,
            Jump::Minutes => 70_000_000,
        }
    }
}

#[derive(Debug, Clone)]
enum Cmd {
    Submit(Vec<NewT>),
    Claim {
        agent: Index,
        max: i64,
    },
    /// The agents of one kind claim together, listed from `first` on; each
    /// asks for `maxes[i % len]`.
    ClaimGroup {
        kind: usize,
        first: Index,
        maxes: Vec<i64>,
    },
    /// `all`: every lease the agent holds, then `extra`.
    Heartbeat {
        agent: Index,
        all: bool,
        extra: Vec<Pick>,
    },
    /// From one of the agents holding leases, if any.
    Complete {
        agent: Index,
        results: Vec<(Pick, Out)>,
    },
    /// Every agent still registered heartbeats the leases it holds.
    HeartbeatAll,
    Cancel(Index),
    ExpireLeases,
    Advance(Jump),
    MarkSilentOffline,
    Drain {
        agent: Index,
        on: bool,
    },
    Deregister(Index),
    /// The agent's process restarts: it registers again with its key,
    /// listing the leases it still has results for.
    Restart {
        agent: Index,
        keep: Vec<Pick>,
    },
    Revoke(Index),
}

#[derive(Debug, Clone)]
struct Scenario {
    /// (kind, capacity) of each agent.
    agents: Vec<(usize, i64)>,
    cmds: Vec<Cmd>,
}

fn new_task() -> impl Strategy<Value = NewT> {
    (
        prop_oneof![4 => Just(0usize), 2 => Just(1), 1 => Just(2)],
        prop::bool::weighted(0.25),
        0..=3i64,
        1..=3i64,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(ty, gpu, urgency, max_attempts, short_timeout, backoff, delayed)| NewT {
                ty,
                gpu,
                urgency,
                max_attempts,
                short_timeout,
                backoff,
                delayed,
            },
        )
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => any::<Index>().prop_map(Pick::Own),
        1 => any::<Index>().prop_map(Pick::Any),
    ]
}

fn outcome() -> impl Strategy<Value = Out> {
    prop_oneof![
        3 => Just(Out::Succeed),
        3 => Just(Out::Fail),
        1 => Just(Out::FailFinal),
        1 => Just(Out::Release),
    ]
}

fn jump() -> impl Strategy<Value = Jump> {
    prop_oneof![
        Just(Jump::Tick),
        Just(Jump::Short),
        Just(Jump::PastRenew),
        Just(Jump::PastLease),
        Just(Jump::Minutes),
    ]
}

fn command() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => vec(new_task(), 1..=4).prop_map(Cmd::Submit),
        6 => (any::<Index>(), 0..=4i64).prop_map(|(agent, max)| Cmd::Claim { agent, max }),
        4 => (0..KINDS.len(), any::<Index>(), vec(0..=4i64, 1..=3))
            .prop_map(|(kind, first, maxes)| Cmd::ClaimGroup { kind, first, maxes }),
        6 => (any::<Index>(), prop::bool::weighted(0.8), vec(pick(), 0..=2))
            .prop_map(|(agent, all, extra)| Cmd::Heartbeat { agent, all, extra }),
        8 => (any::<Index>(), vec((pick(), outcome()), 1..=3))
            .prop_map(|(agent, results)| Cmd::Complete { agent, results }),
        3 => Just(Cmd::HeartbeatAll),
        2 => any::<Index>().prop_map(Cmd::Cancel),
        3 => Just(Cmd::ExpireLeases),
        5 => jump().prop_map(Cmd::Advance),
        2 => Just(Cmd::MarkSilentOffline),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(agent, on)| Cmd::Drain { agent, on }),
        1 => any::<Index>().prop_map(Cmd::Deregister),
        2 => (any::<Index>(), vec(pick(), 0..=2))
            .prop_map(|(agent, keep)| Cmd::Restart { agent, keep }),
        1 => any::<Index>().prop_map(Cmd::Revoke),
    ]
}

fn scenario(steps: usize) -> impl Strategy<Value = Scenario> {
    (
        vec((0..KINDS.len(), 1..=3i64), 1..=4),
        vec(command(), 1..=steps.max(1)),
    )
        .prop_map(|(agents, cmds)| Scenario { agents, cmds })
}

// ------------------------------------------------------------------- model

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
struct MTask {
    id: i64,
    ty: usize,
    gpu: bool,
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
struct Case<'a> {
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

type Step = Result<(), TestCaseError>;

thread_local! {
    /// What this backend's sequences exercised (shrinking included),
    /// printed with `DROVER_MODEL_COVERAGE=1 … -- --nocapture`: a model
    /// test is only as good as what its generator reaches.
    static COVERAGE: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

fn covered(what: impl Into<String>) {
    COVERAGE.with(|c| *c.borrow_mut().entry(what.into()).or_default() += 1);
}

fn fail(msg: impl Into<String>) -> TestCaseError {
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
    async fn start(store: &'a Store, agents: &[(usize, i64)]) -> Result<Case<'a>, TestCaseError> {
        let now = case_start();
        for status in [TaskStatus::Queued, TaskStatus::Running] {
            let filter = TaskFilter {
                status: Some(status),
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

    async fn step(&mut self, cmd: &Cmd) -> Step {
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

    /// Compares everything observable with the model, and takes the
    /// store's draw for each backoff the model only bounds.
    async fn check(&mut self) -> Step {
        let store = self.store;
        // The case's tasks are the newest ones.
        let listed = db(
            "list_tasks",
            store
                .list_tasks(&TaskFilter {
                    limit: self.tasks.len() as i64,
                    ..TaskFilter::default()
                })
                .await,
        )?;
        let listed: HashMap<i64, TaskView> = listed.into_iter().map(|t| (t.id, t)).collect();
        prop_assert_eq!(listed.len(), self.tasks.len());
        for t in &mut self.tasks {
            let Some(s) = listed.get(&t.id) else {
                return Err(fail(format!("task {} is not listed", t.id)));
            };
            prop_assert_eq!(
                (s.status, s.attempts),
                (t.status, t.attempts),
                "task {}: (status, attempts)",
                t.id
            );
            match t.status {
                TaskStatus::Running => {
                    let l = t
                        .lease
                        .ok_or_else(|| fail("model: running without a lease"))?;
                    prop_assert_eq!(
                        (s.agent_id, s.lease_token),
                        (Some(self.agents[l.agent].id), Some(l.token)),
                        "task {}: holder and lease",
                        t.id
                    );
                }
                TaskStatus::Queued => {
                    prop_assert_eq!(s.agent_id, None, "queued task {} has a holder", t.id);
                    match t.run_after {
                        RunAfter::At(at) => {
                            prop_assert_eq!(s.run_after_us, at, "task {}: run_after", t.id)
                        }
                        RunAfter::Between(lo, hi) => {
                            prop_assert!(
                                (lo..=hi).contains(&s.run_after_us),
                                "task {}: retry at {} not in [{}, {}] (now {})",
                                t.id,
                                s.run_after_us,
                                lo,
                                hi,
                                self.now
                            );
                            covered("backoff drawn");
                            t.run_after = RunAfter::At(s.run_after_us);
                        }
                    }
                }
                _ => {}
            }
        }
        // The queue lists in claim order.
        let queued = db(
            "list queued",
            store
                .list_tasks(&TaskFilter {
                    status: Some(TaskStatus::Queued),
                    limit: 100_000,
                    ..TaskFilter::default()
                })
                .await,
        )?;
        let queued: Vec<i64> = queued.iter().map(|t| t.id).collect();
        let expected: Vec<i64> = self
            .queue_order()
            .iter()
            .map(|&i| self.tasks[i].id)
            .collect();
        prop_assert_eq!(queued, expected, "queued tasks in claim order");
        // Agents: status, and C equal to the leases held, never above M.
        for (a, m) in self.agents.iter().enumerate() {
            let s = db("agent_by_token", store.agent_by_token(&m.session).await)?
                .ok_or_else(|| fail(format!("agent {a} not found by its session")))?;
            let running = self.running_of(a);
            prop_assert_eq!(
                (s.status, s.running, s.capacity),
                (m.state.status(), running, m.capacity),
                "agent {}: (status, running, capacity)",
                a
            );
            prop_assert!(s.running <= s.capacity);
        }
        Ok(())
    }

    /// The stats, as the change since the case started. (Once per case:
    /// they count every task in the database.)
    async fn check_stats(&self) -> Step {
        let stats = db("stats", self.store.stats().await)?;
        let count = |s: TaskStatus| self.tasks.iter().filter(|t| t.status == s).count() as i64;
        let online = self
            .agents
            .iter()
            .filter(|a| matches!(a.state, AState::Online | AState::Draining))
            .count() as i64;
        let b = &self.base;
        prop_assert_eq!(
            [
                stats.queued - b.queued,
                stats.running - b.running,
                stats.succeeded - b.succeeded,
                stats.failed - b.failed,
                stats.cancelled - b.cancelled,
                stats.agents_online - b.agents_online,
            ],
            [
                count(TaskStatus::Queued),
                count(TaskStatus::Running),
                count(TaskStatus::Succeeded),
                count(TaskStatus::Failed),
                count(TaskStatus::Cancelled),
                online,
            ],
            "stats (queued, running, succeeded, failed, cancelled, agents online)"
        );
        Ok(())
    }

    /// At the end: each task's attempt history has one row per claim, and
    /// only a running task has an attempt still running, under its lease.
    async fn check_histories(&self) -> Step {
        for t in &self.tasks {
            let detail = db("get_task", self.store.get_task(t.id).await)?
                .ok_or_else(|| fail(format!("task {} not found", t.id)))?;
            let open: Vec<i64> = detail
                .attempt_history
                .iter()
                .filter(|h| h.outcome == "running")
                .map(|h| h.lease_token)
                .collect();
            let current: Vec<i64> = t
                .lease
                .filter(|_| t.status == TaskStatus::Running)
                .map(|l| l.token)
                .into_iter()
                .collect();
            prop_assert_eq!(
                (detail.attempt_history.len(), open),
                (t.claims, current),
                "task {}: (attempt rows, running attempts)",
                t.id
            );
        }
        Ok(())
    }
}

async fn run_case(store: &Store, s: &Scenario) -> Step {
    let mut case = Case::start(store, &s.agents).await?;
    case.check().await?;
    for (n, cmd) in s.cmds.iter().enumerate() {
        let at = |e: TestCaseError| fail(format!("step {n} ({cmd:?}): {e}"));
        case.step(cmd).await.map_err(at)?;
        case.check().await.map_err(at)?;
    }
    case.check_histories().await?;
    case.check_stats().await?;
    Ok(())
}

fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        // Shrinking a PostgreSQL failure costs a database round per step.
        config.max_shrink_time = 300_000;
    }
    // A failure prints its minimal sequence; a regression found this way is
    // kept as a plain test below rather than as a seed file.
    config.failure_persistence = None;
    config
}

fn steps() -> usize {
    std::env::var("DROVER_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_STEPS)
}

/// Proptest's runner is synchronous: each case runs on this test's own
/// runtime with `block_on` (so not through `both_backends!`, whose tests
/// are already inside one).
fn run_model(postgres: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (store, guard) = rt.block_on(async {
        if postgres {
            support::postgres().await
        } else {
            support::sqlite().await
        }
    });
    let mut runner = TestRunner::new(config());
    let result = runner.run(&scenario(steps()), |s| rt.block_on(run_case(&store, &s)));
    drop(store);
    drop(guard);
    if std::env::var_os("DROVER_MODEL_COVERAGE").is_some() {
        COVERAGE.with(|c| {
            eprintln!(
                "{}: {:#?}",
                if postgres { "postgres" } else { "sqlite" },
                c.borrow()
            )
        });
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, s)) => {
            panic!("{why}\nminimal failing sequence:\n{s:#?}")
        }
        Err(TestError::Abort(why)) => panic!("aborted: {why}"),
    }
}

#[test]
fn sqlite_store_follows_the_model() {
    run_model(false);
}

#[test]
fn postgres_store_follows_the_model() {
    run_model(true);
}

// ------------------------------------------- regressions the model found

both_backends!(
    a_group_claim_answers_every_agent_with_its_own_state,
    a_drained_agent_stays_drained_across_offline,
    a_drained_agent_stays_drained_when_it_restarts,
);

async fn register_plain(store: &Store, name: &str, capacity: i64) -> i64 {
    let spec = AgentSpec {
        name: name.into(),
        hostname: "model".into(),
        version: "test".into(),
        task_types: vec!["t".into()],
        labels: vec![],
        capacity,
    };
    let reg = Registration {
        spec: &spec,
        session_hash: name,
        key_hash: None,
        enrollment_id: None,
        resuming: &[],
    };
    store
        .register_agent(&reg, drover_engine::time::now_us())
        .await
        .expect("register")
        .agent_id
}

/// Found by the model on SQLite: once the first agent of a group found the
/// queue empty, the agents after it were answered `Claim::default()`:
/// capacity 0, and no drain even for a draining agent, which then stayed
/// parked instead of being told to stop.
async fn a_group_claim_answers_every_agent_with_its_own_state(store: Store) {
    let a = register_plain(&store, "a", 1).await;
    let b = register_plain(&store, "b", 2).await;
    let d = register_plain(&store, "d", 3).await;
    store.set_agent_draining(d, true).await.expect("drain");
    let claims = store
        .claim_group(
            &[(a, 1), (b, 2), (d, 3)],
            drover_engine::time::now_us(),
            TTL,
        )
        .await
        .expect("claim_group");
    let got: Vec<(usize, i64, i64, bool)> = claims
        .iter()
        .map(|c| (c.tasks.len(), c.running, c.capacity, c.drain))
        .collect();
    assert_eq!(
        got,
        vec![(0, 0, 1, false), (0, 0, 2, false), (0, 0, 3, true)]
    );
}

/// Found by the model (and named in issue 18): an agent drained before it
/// went silent came back online, and was given work, at its next heartbeat.
async fn a_drained_agent_stays_drained_across_offline(store: Store) {
    let a = register_plain(&store, "a", 1).await;
    store.set_agent_draining(a, true).await.expect("drain");
    let later = drover_engine::time::now_us() + 11_000_000;
    let sweep = store
        .mark_silent_agents_offline(later - SILENCE, later)
        .await
        .expect("silence sweep");
    assert_eq!(sweep.agents_offline, vec![a]);
    let reply = store
        .heartbeat(a, &[], later, TTL, RENEW_BELOW)
        .await
        .expect("heartbeat");
    assert!(reply.drain, "the agent came back undrained");
    assert!(store.claim(a, 1, later, TTL).await.expect("claim").drain);
}

/// Found by the model: an agent drained, stopped (deregistered) and started
/// again with its key came back online.
async fn a_drained_agent_stays_drained_when_it_restarts(store: Store) {
    let spec = AgentSpec {
        name: "a".into(),
        hostname: "model".into(),
        version: "test".into(),
        task_types: vec!["t".into()],
        labels: vec![],
        capacity: 1,
    };
    let register = |session: &'static str| Registration {
        spec: &spec,
        session_hash: session,
        key_hash: Some("a-key"),
        enrollment_id: None,
        resuming: &[],
    };
    let now = drover_engine::time::now_us();
    let a = store
        .register_agent(&register("first"), now)
        .await
        .expect("register")
        .agent_id;
    store.set_agent_draining(a, true).await.expect("drain");
    store.deregister_agent(a, now).await.expect("deregister");
    let again = store
        .register_agent(&register("second"), now)
        .await
        .expect("register again");
    assert_eq!((again.agent_id, again.resumed), (a, true));
    assert!(
        store.claim(a, 1, now, TTL).await.expect("claim").drain,
        "the agent came back undrained"
    );
}
