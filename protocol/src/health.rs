//! Queue health (`GET /api/v1/queues`): per task type and per concurrency
//! key, how much work waits, how long the oldest has waited, how fast
//! tasks start, how many leases were lost, and who could take the work.

use serde::{Deserialize, Serialize};

/// Task types and keys shown, each: the deepest first.
pub const QUEUE_HEALTH_ROWS: usize = 50;
/// First claims the start latency figures come from, at most: the latest
/// ones in the window.
pub const QUEUE_HEALTH_SAMPLE: i64 = 5_000;
/// The window's default, and its bounds, in seconds.
pub const DEFAULT_HEALTH_WINDOW_S: i64 = 300;
pub const MIN_HEALTH_WINDOW_S: i64 = 10;
pub const MAX_HEALTH_WINDOW_S: i64 = 3_600;

/// `GET /api/v1/queues?window=<seconds>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueHealth {
    /// Deepest first (queued, then running, then name), at most
    /// [`QUEUE_HEALTH_ROWS`]; types that online agents handle but that
    /// have no work are listed after those that have.
    pub types: Vec<TypeHealth>,
    /// Most held first, then deepest, at most [`QUEUE_HEALTH_ROWS`]; only
    /// keys with a queued or running task.
    pub keys: Vec<KeyHealth>,
    /// The window the latency and lease figures cover.
    pub window_s: i64,
    /// When the figures were taken (ages are as of this time).
    pub at_us: i64,
    /// More task types (keys) have work than are listed.
    pub more_types: bool,
    pub more_keys: bool,
    /// First claims in the window the start latencies come from, and
    /// whether there were more than [`QUEUE_HEALTH_SAMPLE`] (then the
    /// latest ones are used).
    pub sampled_starts: i64,
    pub sample_capped: bool,
}

/// One task type's queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TypeHealth {
    pub task_type: String,
    /// Queued tasks (depth), including the held and delayed ones.
    pub queued: i64,
    /// Of those, held: waiting for a slot of their concurrency key.
    pub held: i64,
    /// Of those, not due yet (`run_after` or a retry's backoff ahead).
    pub delayed: i64,
    pub running: i64,
    /// Since when the longest-waiting due task has waited (its `run_after`:
    /// its submission, or the end of its retry backoff), and for how long
    /// as of `at_us`; absent when no queued task is due.
    pub oldest_since_us: Option<i64>,
    pub oldest_wait_us: Option<i64>,
    /// Submission to first claim of the tasks first claimed in the window
    /// (from the sample): how many, median and 99th percentile.
    pub starts: i64,
    pub start_p50_us: Option<i64>,
    pub start_p99_us: Option<i64>,
    /// Attempts of the type that lost their lease in the window (it
    /// expired, or its agent went offline, restarted or was revoked); the
    /// task was queued again or failed.
    pub leases_expired: i64,
    /// Online agents (not draining) that declared the type, whatever
    /// their labels, and their free slots (capacity − running).
    pub agents: i64,
    pub free_slots: i64,
}

impl TypeHealth {
    /// Work waits that no online agent takes.
    pub fn stranded(&self) -> bool {
        self.queued > 0 && self.agents == 0
    }
}

/// One concurrency key (named semaphore).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct KeyHealth {
    pub key: String,
    /// Tasks holding a slot (queued and not held, or running), and the limit.
    pub admitted: i64,
    pub limit: i64,
    pub queued: i64,
    /// Queued tasks waiting for a slot.
    pub held: i64,
    pub running: i64,
    /// Like [`TypeHealth::oldest_since_us`], over the key's queued tasks.
    pub oldest_since_us: Option<i64>,
    pub oldest_wait_us: Option<i64>,
}
