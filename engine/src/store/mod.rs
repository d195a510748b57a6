//! The durable store: one interface ([`QueueStore`]), two implementations
//! (SQLite for the embedded single-instance default, PostgreSQL for several
//! server instances). The same test suite (`engine/tests/store.rs`) runs
//! against both.
//!
//! Each method commits its writes together, in one database transaction (or
//! one statement), except where one bad item must not undo the others:
//! `RunStore::expire_approvals` decides each due approval in a transaction of
//! its own, `RunStore::advance_runs` falls back to one transaction per run
//! when advancing them together fails, and on SQLite an agent's results are
//! committed by the writer thread before the runs they move are advanced
//! (`UserStore::start_session` also drops expired sessions in a statement of
//! its own). Decisions that are not SQL come from `plan` (what an ending, a
//! sweep or an advance makes happen next, itself using [`crate::lifecycle`]
//! and [`crate::workflow::plan`]), so the backends differ only in how they
//! read and write rows. See docs/ARCHITECTURE.md ("Storage backends") for
//! the layout.

/// Implements a store trait for [`Store`] by forwarding every method to the
/// chosen backend: each trait lists its methods once instead of matching on
/// the backend by hand in every method.
macro_rules! delegate_to_backend {
    ($trait:ident {
        $( fn $sync:ident(&self) -> $sret:ty; )*
        $( async fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )*
    }) => {
        impl $trait for Store {
            $(
                fn $sync(&self) -> $sret {
                    match &self.0 {
                        $crate::store::Backend::Sqlite(s) => s.$sync(),
                        $crate::store::Backend::Postgres(s) => s.$sync(),
                    }
                }
            )*
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.0 {
                        $crate::store::Backend::Sqlite(s) => s.$name($($arg),*).await,
                        $crate::store::Backend::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

mod agent_load;
mod audit;
mod backup;
mod combine;
mod enrollment;
mod health;
mod keys;
mod logs;
mod notifications;
mod overview;
mod overview_history;
mod plan;
mod postgres;
mod queue_health;
mod rate_limits;
mod retention;
mod retry;
mod rows;
mod run_events;
mod runs;
mod schedules;
mod signals;
mod sorting;
mod sql;
mod sqlite;
mod task_totals;
mod triggers;
mod users;
mod waiting;
mod waits;
mod workflow_defs;

use drover_protocol::agent::{Assignment, HeartbeatResponse, Lease, TaskResult};
use drover_protocol::api::{AgentView, Stats, SubmittedTask, TaskDetail, TaskStatus, TaskView};

use crate::domain::{AgentSpec, Scheduling, TaskSpec};
use crate::error::StoreError;
use plan::{
    ending_of_result, ending_of_sweep, freed_slots, plan_endings, sweep_of, Current, Ending,
    FreedSlots, SweptBecause,
};

pub use agent_load::{bucket_width, AgentLoadStore};
pub use audit::{AuditFilter, AuditStore, NewAuditEntry};
pub use backup::{backup, BackupReport};
pub use combine::GroupCommit;
pub use enrollment::{EnrollmentStore, NewEnrollment};
pub use health::Check;
pub use keys::KeyStore;
pub use logs::{Appended, LogRange, LogStore};
pub use notifications::{
    Attempted, Cursor, DeliveryFilter, DeliveryRow, NewDelivery, NotificationRuleDef,
    NotificationRuleRow, NotificationStore,
};
pub use overview::{OverviewCounts, OverviewStore};
pub use overview_history::{
    DepthSample, OverviewHistoryStore, FINISH_SLOT_US, OVERVIEW_HISTORY_US,
};
use postgres::PgStore;
pub use queue_health::QueueHealthStore;
pub use rate_limits::{RateLimitRow, RateLimitStore};
pub use retention::{Batch, RetentionPolicy, RetentionStore};
pub use retry::TaskRetryStore;
pub use runs::{Advanced, ApprovalRecord, Recorded, Refill, RunFilter, RunStore, APPROVAL_PAGE};
pub use schedules::{ScheduleDef, ScheduleRow, ScheduleStore, Started, TickRecord};
pub use signals::{Signal, Signals};
pub use sorting::{RunSort, Sort, SortColumn, TaskSort, UNINDEXED_SORT_LIMIT};
use sqlite::SqliteStore;
pub use task_totals::{TaskTotalsStore, MARK_LAG_US, MARK_STEP_ROWS};
pub use triggers::{NewTriggerRow, TriggerRow, TriggerStore};
pub use users::{ApiToken, NewToken, TokenUser, UserChange, UserRecord, UserStore, UserSummary};
pub use waiting::WaitingStore;
pub use waits::{WaitRow, WaitStore};
pub use workflow_defs::WorkflowDefStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A unique violation on a named thing's name is a conflict naming it.
pub(super) fn name_taken(e: sqlx::Error, what: &str, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("a {what} named {name:?} exists already"))
        }
        _ => e.into(),
    }
}

/// The answer to a create refused because `max` of its kind exist.
pub(super) fn too_many(what: &str, max: i64) -> StoreError {
    StoreError::Conflict(format!(
        "there are {max} {what}s already, the most one server keeps"
    ))
}

/// The result of one claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    /// Highest priority first.
    pub tasks: Vec<Assignment>,
    /// The agent's running count after the claim (C).
    pub running: i64,
    /// The agent's capacity (M).
    pub capacity: i64,
    /// The agent is draining (or gone) and gets no work.
    pub drain: bool,
}

/// What the server needs to know about an authenticated agent session.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSession {
    pub id: i64,
    pub name: String,
    pub status: drover_protocol::api::AgentStatus,
    pub capacity: i64,
    pub running: i64,
    pub task_types: Vec<String>,
    pub labels: Vec<String>,
}

/// Filters of `GET /api/v1/tasks`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Any of these (none: every status). Exactly `[Queued]` lists in the
    /// order the scheduler takes them; everything else newest first.
    pub statuses: Vec<TaskStatus>,
    pub task_type: Option<String>,
    pub agent_id: Option<i64>,
    /// Matches a task whose id it is, or whose type or payload contains it
    /// (ignoring ASCII case).
    pub text: Option<String>,
    /// Created at or after this time.
    pub created_after_us: Option<i64>,
    /// Created before this time.
    pub created_before_us: Option<i64>,
    /// Finished at or after this time (only finished tasks): read through
    /// the finish-time index, so "what did this agent finish lately" reads
    /// only the window, not the history.
    pub finished_after_us: Option<i64>,
    /// Queued tasks by what can happen to them now (the time is `now_us`).
    pub queue_state: Option<QueueState>,
    pub now_us: i64,
    /// Another order than the default (newest first; the queue in claim
    /// order).
    pub sort: Option<Sort<TaskSort>>,
    /// Keyset pagination: the list continues after this task, in the list's
    /// order (smaller ids; in claim order, the tasks the scheduler takes
    /// after it).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// What can happen to a queued task now: the queue's view is split by it,
/// so the head of "ready" is what the scheduler takes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// An agent that handles it may claim it now.
    Ready,
    /// Not before its `run_after` (a delay, or a retry's backoff).
    Scheduled,
    /// Waiting for a slot of its concurrency key or a rate limit's token.
    Held,
}

impl QueueState {
    pub const ALL: [QueueState; 3] = [QueueState::Ready, QueueState::Scheduled, QueueState::Held];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Ready => "ready",
            QueueState::Scheduled => "scheduled",
            QueueState::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl TaskFilter {
    /// The list is the queue in the scheduler's claim order.
    pub fn in_claim_order(&self) -> bool {
        self.sort.is_none() && (self.statuses == [TaskStatus::Queued] || self.queue_state.is_some())
    }

    /// The number of matching tasks, when the counted totals give it: the
    /// filter is by status alone. Counting rows would read the history.
    pub fn total_from(&self, stats: &Stats) -> Option<i64> {
        let status_only = self.task_type.is_none()
            && self.queue_state.is_none()
            && self.agent_id.is_none()
            && self.text.is_none()
            && self.created_after_us.is_none()
            && self.created_before_us.is_none()
            && self.finished_after_us.is_none();
        if !status_only {
            return None;
        }
        let total = TaskStatus::ALL
            .into_iter()
            .filter(|s| self.statuses.is_empty() || self.statuses.contains(s))
            .map(|s| stats.tasks(s))
            .sum();
        Some(total)
    }
}

/// How many rows a list's filter matches, counted up to [`COUNT_BOUND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCount {
    pub total: i64,
    /// More than `total` match: counting stopped at the bound.
    pub more: bool,
}

impl ListCount {
    /// From a count that stopped one past the bound.
    pub fn bounded(n: i64) -> Self {
        Self {
            total: n.min(COUNT_BOUND),
            more: n > COUNT_BOUND,
        }
    }
}

/// Counting a search stops here: past it the answer is "10,000+", and a
/// count of a search through ten million rows is not worth its time.
pub const COUNT_BOUND: i64 = drover_protocol::api::LIST_COUNT_BOUND;

/// An agent registering: what it declared and the credentials it proved.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    pub spec: &'a AgentSpec,
    /// Hash of the session token the agent is given.
    pub session_hash: &'a str,
    /// Hash of the agent's own key, when it sent one.
    pub key_hash: Option<&'a str>,
    /// The enrollment token it presented.
    pub enrollment_id: Option<i64>,
    /// When resuming: the leases whose results it still has to deliver.
    pub resuming: &'a [Lease],
}

/// What registering did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registered {
    pub agent_id: i64,
    /// An agent known by its key was resumed rather than created.
    pub resumed: bool,
    /// The tasks the resumed agent held and no longer runs, requeued.
    pub sweep: Sweep,
}

/// What a periodic duty changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sweep {
    pub agents_offline: Vec<i64>,
    pub tasks_requeued: u64,
    pub tasks_failed: u64,
    /// Workflow runs whose tasks the sweep ended for good: they must be
    /// advanced (a step whose last attempt timed out fails its run).
    pub runs: Vec<i64>,
}

/// What a batch of results changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completed {
    /// One per result, in order.
    pub applied: Vec<Applied>,
    /// The workflow runs owning a task that ended for good (sorted, no
    /// repeats): they may move on. Returned so the caller can advance them
    /// without looking them up again.
    pub runs: Vec<i64>,
}

/// Outcome of ending one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The lease was current; the task moved to this status.
    Yes(TaskStatus),
    /// The lease was expired or superseded; nothing changed.
    Stale,
    /// The lease is current but another agent holds it: the sender is not
    /// the agent the task was given to. Nothing changed.
    NotHolder,
}

/// The operations of the queue. See the module docs for the contract.
#[allow(async_fn_in_trait)]
pub trait QueueStore {
    /// Human-readable backend name (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    async fn submit(
        &self,
        specs: &[TaskSpec],
        sched: &Scheduling,
        now_us: i64,
    ) -> Result<Vec<SubmittedTask>>;

    /// Claims up to `max_tasks` of the agent's task types for it, highest rank
    /// first, never taking the agent past its capacity. Each claimed task gets
    /// a new lease token and a lease expiring at `now + lease_ttl`.
    async fn claim(
        &self,
        agent_id: i64,
        max_tasks: i64,
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Claim>;

    /// Claims for a group of agents that take the same task types and
    /// labels, given as `(agent_id, max_tasks)`: the best-ranked tasks go to
    /// the least-loaded agent (L = C/M as the store counts it now; a parked
    /// claim's load from when it arrived may be stale) up to its free slots,
    /// the next ones to the next, ties going to the agent listed first, as
    /// a sequence of [`claim`](Self::claim)s would hand them out. One claim
    /// per agent, in the order given. On
    /// PostgreSQL it is one statement for the group, so a dispatcher round
    /// costs one round trip per kind of agent rather than one per agent.
    async fn claim_group(
        &self,
        agents: &[(i64, i64)],
        now_us: i64,
        lease_ttl_us: i64,
    ) -> Result<Vec<Claim>>;

    /// Records the results `agent_id` sent. A result applies only if its
    /// lease is current and held by that agent.
    async fn complete(
        &self,
        agent_id: i64,
        results: &[TaskResult],
        now_us: i64,
    ) -> Result<Completed>;

    /// Renews the leases the agent still holds; answers which of the tasks it
    /// runs it must stop (cancelled, timed out, or reassigned). A lease is
    /// renewed (to `lease_ttl_us` from now, never past the task's timeout)
    /// only when less than `renew_below_us` of it is left; the others are
    /// read, not rewritten or locked. The server makes leases one heartbeat
    /// interval longer than the heartbeat timeout and renews them below the
    /// timeout, so after any heartbeat every lease still has the timeout to
    /// run (as when each heartbeat rewrote every lease), while a task is
    /// rewritten at most every other heartbeat and one shorter than an
    /// interval never: an agent running hundreds of tasks no longer locks
    /// all of their rows every few seconds.
    async fn heartbeat(
        &self,
        agent_id: i64,
        running: &[Lease],
        now_us: i64,
        lease_ttl_us: i64,
        renew_below_us: i64,
    ) -> Result<HeartbeatResponse>;

    /// Registers an agent. One presenting the key of a known agent that is
    /// not revoked resumes it: the same id and the leases listed in
    /// `resuming`; every other task it held is requeued, since the process
    /// that ran it is gone.
    async fn register_agent(&self, reg: &Registration<'_>, now_us: i64) -> Result<Registered>;
    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentSession>>;
    /// Marks the agent gone and requeues what it still held.
    async fn deregister_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep>;
    /// Revokes an agent: its session is refused from now on, its key no
    /// longer resumes it, and its tasks are requeued at once.
    async fn revoke_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep>;
    /// Drain (stop giving it work) or re-enable an agent.
    async fn set_agent_draining(&self, agent_id: i64, draining: bool) -> Result<()>;
    async fn list_agents(&self) -> Result<Vec<AgentView>>;

    async fn get_task(&self, id: i64) -> Result<Option<TaskDetail>>;
    /// Queued tasks come in claim order; others newest first.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskView>>;
    /// How many tasks `filter` matches (its cursor and limit aside), up to
    /// [`COUNT_BOUND`].
    async fn count_tasks(&self, filter: &TaskFilter) -> Result<ListCount>;
    /// Cancels a queued or running task; returns its status afterwards.
    async fn cancel_task(&self, id: i64, now_us: i64) -> Result<TaskStatus>;
    async fn stats(&self) -> Result<Stats>;
    /// Task types that some registered agent (in any state) declared.
    async fn known_task_types(&self) -> Result<Vec<String>>;
    /// The earliest `run_after` of a queued task still in the future.
    async fn next_run_after(&self, now_us: i64) -> Result<Option<i64>>;

    /// Duty: agents silent since `silent_since_us` go offline, their tasks requeued.
    async fn mark_silent_agents_offline(&self, silent_since_us: i64, now_us: i64) -> Result<Sweep>;
    /// Duty: running tasks whose lease expired are requeued, and those past
    /// their timeout fail the attempt. A lease never outlives the task's
    /// timeout, so one index-backed sweep finds both.
    async fn expire_leases(&self, now_us: i64) -> Result<Sweep>;

    /// Takes or keeps the named leadership until `now + ttl`; true if held.
    async fn try_lead(&self, name: &str, holder: &str, now_us: i64, ttl_us: i64) -> Result<bool>;
    /// Gives leadership up (on shutdown) so another instance takes over at once.
    async fn resign(&self, name: &str, holder: &str) -> Result<()>;
}

/// The store the server runs on, chosen by the database URL. Which
/// database it is stays inside: callers see the traits, `backend()` for
/// display, and the signals of `signals.rs`.
#[derive(Clone, Debug)]
pub struct Store(Backend);

/// The two implementations behind [`Store`].
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Connects to `sqlite://path` (created if missing) or `postgres://...`
    /// and runs the migrations for that database.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, max_connections, GroupCommit::default()).await
    }

    /// [`Store::connect`], with how concurrent writes share commits.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        group_commit: GroupCommit,
    ) -> Result<Self> {
        let store = if url.starts_with("sqlite:") {
            Backend::Sqlite(SqliteStore::connect(url, max_connections, group_commit).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres(PgStore::connect(url, max_connections, group_commit).await?)
        } else {
            return Err(StoreError::Config(format!(
                "{url:?}: expected sqlite://PATH or postgres://..."
            )));
        };
        Ok(Store(store))
    }
}

delegate_to_backend!(QueueStore {
    fn backend(&self) -> &'static str;
    async fn submit(&self, specs: &[TaskSpec], sched: &Scheduling, now_us: i64) -> Result<Vec<SubmittedTask>>;
    async fn claim(&self, agent_id: i64, max_tasks: i64, now_us: i64, lease_ttl_us: i64) -> Result<Claim>;
    async fn claim_group(&self, agents: &[(i64, i64)], now_us: i64, lease_ttl_us: i64) -> Result<Vec<Claim>>;
    async fn complete(&self, agent_id: i64, results: &[TaskResult], now_us: i64) -> Result<Completed>;
    async fn heartbeat(&self, agent_id: i64, running: &[Lease], now_us: i64, lease_ttl_us: i64, renew_below_us: i64) -> Result<HeartbeatResponse>;
    async fn register_agent(&self, reg: &Registration<'_>, now_us: i64) -> Result<Registered>;
    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentSession>>;
    async fn deregister_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep>;
    async fn revoke_agent(&self, agent_id: i64, now_us: i64) -> Result<Sweep>;
    async fn set_agent_draining(&self, agent_id: i64, draining: bool) -> Result<()>;
    async fn list_agents(&self) -> Result<Vec<AgentView>>;
    async fn get_task(&self, id: i64) -> Result<Option<TaskDetail>>;
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskView>>;
    async fn count_tasks(&self, filter: &TaskFilter) -> Result<ListCount>;
    async fn cancel_task(&self, id: i64, now_us: i64) -> Result<TaskStatus>;
    async fn stats(&self) -> Result<Stats>;
    async fn known_task_types(&self) -> Result<Vec<String>>;
    async fn next_run_after(&self, now_us: i64) -> Result<Option<i64>>;
    async fn mark_silent_agents_offline(&self, silent_since_us: i64, now_us: i64) -> Result<Sweep>;
    async fn expire_leases(&self, now_us: i64) -> Result<Sweep>;
    async fn try_lead(&self, name: &str, holder: &str, now_us: i64, ttl_us: i64) -> Result<bool>;
    async fn resign(&self, name: &str, holder: &str) -> Result<()>;
});

/// The refusal of a registration presenting the key of revoked agent `id`.
fn revoked_key(id: i64) -> StoreError {
    StoreError::Revoked(format!(
        "agent {id}, whose key this is, was revoked; delete its key file to enroll it as a new agent"
    ))
}

impl Sweep {
    fn add(&mut self, other: Sweep) {
        self.agents_offline.extend(other.agents_offline);
        self.tasks_requeued += other.tasks_requeued;
        self.tasks_failed += other.tasks_failed;
        self.runs.extend(other.runs);
        self.runs.sort_unstable();
        self.runs.dedup();
    }

    /// Whether the sweep changed anything worth waking the dispatcher for.
    pub fn is_empty(&self) -> bool {
        self.agents_offline.is_empty() && self.tasks_requeued == 0 && self.tasks_failed == 0
    }
}

fn stats_of(
    counts: impl Iterator<Item = Result<(String, i64)>>,
    agents_online: i64,
) -> Result<Stats> {
    let mut stats = Stats {
        agents_online,
        ..Stats::default()
    };
    for entry in counts {
        let (status, n) = entry?;
        match rows::task_status(&status)? {
            TaskStatus::Queued => stats.queued = n,
            TaskStatus::Running => stats.running = n,
            TaskStatus::Succeeded => stats.succeeded = n,
            TaskStatus::Failed => stats.failed = n,
            TaskStatus::Cancelled => stats.cancelled = n,
        }
    }
    Ok(stats)
}
