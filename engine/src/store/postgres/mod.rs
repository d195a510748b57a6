//! PostgreSQL backend: any number of server instances share one database.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` so instances claim side by side
//! without waiting on each other or taking the same row. Because every
//! statement is a network round trip, multi-row work is one statement over
//! `unnest`ed arrays, and a claim is a single statement whose CTEs also write
//! the attempt rows, the events and the agent's running count. Changes that
//! make work claimable `NOTIFY drover_work`, so the dispatchers of the other
//! instances wake at once.

mod advance;
mod agents;
mod audit;
mod batch;
mod claim;
mod enrollment;
mod lists;
mod notifier;
mod overview;
mod queue;
mod results;
mod retry;
mod runs;
mod submit;
mod users;
mod workflows;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;

use drover_protocol::api::SubmittedTask;

use super::combine::{Combiner, GroupCommit};
use super::Result;

/// The channel instances use to wake each other's dispatchers.
pub const WORK_CHANNEL: &str = "drover_work";

/// A random tag for this process, sent as the payload of its work
/// notifications (see `postgres_instance_tag`).
pub(super) fn instance_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Claims only: connections with bitmap scans off (see [`Self::connect`]).
    claims: PgPool,
    notifier: notifier::Notifier,
    /// Submits, gathered into shared commits.
    submits: Combiner<submit::Rows, Vec<SubmittedTask>>,
    /// Agents' results, gathered into shared transactions (`None` in the
    /// store the gathering task itself writes with).
    results: Option<Combiner<results::ResultsJob, crate::store::Recorded>>,
    /// Whether this instance's `LISTEN` connection is up (`signals.rs`
    /// keeps it; `/readyz` reads it).
    listening: Arc<AtomicBool>,
}

/// The migrations this build expects, run at connect and checked by
/// readiness.
pub(super) static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

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
    pub async fn connect(
        url: &str,
        max_connections: u32,
        group_commit: GroupCommit,
    ) -> Result<Self> {
        // No JIT: Drover's statements are short, and PostgreSQL compiles one
        // whose estimated cost passes `jit_above_cost`, which the claim's
        // and the counts' estimates do once `tasks` holds millions of
        // finished rows: 40 ms of compiling for 2 ms of work, on every
        // claim (docs/SCALING.md).
        let options = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
        let pool = pool_options(max_connections.max(2))
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&pool).await?;
        // A claim must walk `tasks_claim` in rank order and stop at its
        // limit. Left to itself the planner often prefers a bitmap scan of a
        // partial index on `status = 'queued'` and a sort, which reads every
        // index entry of a task that was ever queued and not yet vacuumed:
        // at a thousand tasks a second that is tens of thousands of dead
        // entries a minute, read again by every claim (a plain index scan
        // marks them dead the first time and skips them after).
        let claims = pool_options(CLAIM_CONNECTIONS)
            .connect_lazy_with(options.options([("enable_bitmapscan", "off")]));
        let notifier = notifier::Notifier::start(pool.clone());
        let submits = submit::combiner(group_commit, pool.clone(), notifier.clone());
        let mut store = Self {
            pool,
            claims,
            notifier,
            submits,
            results: None,
            listening: Arc::new(AtomicBool::new(false)),
        };
        // A results transaction holds a connection for several round
        // trips: half the pool may record results side by side, and only
        // beyond that are agents' requests gathered (a few agents keep
        // their own transactions; hundreds share them).
        let in_flight = (max_connections as usize / 2).max(2);
        store.results = Some(results::combiner(group_commit, in_flight, store.clone()));
        Ok(store)
    }

    /// Sends this instance's notices to the others after commit (see
    /// `pg_notifier`).
    pub fn notifier(&self) -> &notifier::Notifier {
        &self.notifier
    }

    /// Tells the other instances, soon, that work became claimable: for
    /// changes already committed.
    pub(super) fn announce_work(&self) {
        self.notifier
            .notify(WORK_CHANNEL, instance_tag().to_string());
    }

    /// Whether the `LISTEN` connection is up, shared with its loop.
    pub(super) fn listening(&self) -> &Arc<AtomicBool> {
        &self.listening
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
}
