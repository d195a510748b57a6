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
//!
//! Files: `commands.rs` (what a sequence is made of, and its strategies),
//! `model.rs` (the model and a case driving both sides), `model/step.rs`
//! (one command on both), `model/checks.rs` (the comparisons).

mod commands;
mod model;

use drover_engine::domain::AgentSpec;
use drover_engine::store::{QueueStore, Registration};
use drover_engine::Store;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use commands::{scenario, Scenario};
use model::{covered_report, fail, Case, MTask, Step};

#[macro_use]
#[path = "../support/mod.rs"]
mod support;
use support::SCHED;

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
        let backend = if postgres { "postgres" } else { "sqlite" };
        eprintln!("{backend}: {}", covered_report());
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
