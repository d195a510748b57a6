//! Rate limits on both backends: a token bucket per scope (`type:<task
//! type>` or `key:<concurrency key>`) kept in `rate_limits`, so it holds
//! across server instances and leader changes.
//!
//! A task a limit covers arrives *rate-held* (`held = 2`: queued, out of
//! the claim index, so it blocks nothing behind it); database triggers do
//! that on every insert path. The leader calls
//! [`RateLimitStore::release_rate_limited`] every few milliseconds: each
//! bucket refills at its rate up to its burst, and each whole token
//! releases the best held task (rank, then id), through its concurrency
//! key's admission when it has a key. Retries of a released task are not
//! held again: the limit meters first starts.

use super::{Result, Store};
use crate::error::StoreError;

/// A stored limit with its bucket.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RateLimitRow {
    pub scope: String,
    pub per_second: f64,
    pub burst: i64,
    pub tokens: f64,
    pub refilled_at: i64,
    pub created_by: String,
    pub created_at: i64,
    /// Tasks it holds now (counted when listed).
    #[sqlx(default)]
    pub held: i64,
}

impl RateLimitRow {
    /// When the bucket next has a whole token.
    pub fn next_release_us(&self, now_us: i64) -> i64 {
        let tokens = (self.tokens
            + self.per_second * (now_us - self.refilled_at).max(0) as f64 / 1e6)
            .min(self.burst as f64);
        if tokens >= 1.0 || self.per_second <= 0.0 {
            return now_us;
        }
        now_us + ((1.0 - tokens) / self.per_second * 1e6).ceil() as i64
    }
}

/// The bucket after `elapsed_us`, refilled at its rate. While tasks wait
/// the tokens are owed, so a pass that comes late (a busy leader) releases
/// what it missed rather than losing it; at most a second's worth is owed
/// beyond the burst, so a stalled leader does not release a flood. An idle
/// bucket is cut back to its burst by the release ([`idle`]).
fn refill(tokens: f64, per_second: f64, burst: i64, elapsed_us: i64) -> f64 {
    (tokens + per_second * elapsed_us.max(0) as f64 / 1e6).min(burst as f64 + per_second)
}

/// A bucket whose queue ran dry keeps at most its burst.
fn idle(tokens: f64, burst: i64) -> f64 {
    tokens.min(burst as f64)
}

/// Rate limits on the backends.
#[allow(async_fn_in_trait)]
pub trait RateLimitStore {
    /// Creates or changes the limit of `scope`; a new bucket starts full.
    async fn put_rate_limit(
        &self,
        scope: &str,
        per_second: f64,
        burst: i64,
        by: &str,
        now_us: i64,
    ) -> Result<RateLimitRow>;
    /// Every limit, with how many tasks it holds.
    async fn rate_limits(&self) -> Result<Vec<RateLimitRow>>;
    /// The limit holding tasks of this type or key, if any.
    async fn rate_limit_for(
        &self,
        task_type: &str,
        key: Option<&str>,
    ) -> Result<Option<RateLimitRow>>;
    /// Removes a limit and releases what it held.
    async fn delete_rate_limit(&self, scope: &str) -> Result<()>;
    /// Refills every bucket and releases the held tasks its tokens allow;
    /// returns how many were released, and how many limits there are.
    async fn release_rate_limited(&self, now_us: i64) -> Result<(u64, usize)>;
}

mod sql {
    pub const PUT: &str = "INSERT INTO rate_limits (scope, per_second, burst, tokens, refilled_at, \
        created_by, created_at) SELECT $1, $2, $3, CAST($3 AS DOUBLE PRECISION), $4, $5, $4 \
        WHERE (SELECT COUNT(*) FROM rate_limits) < $6 OR EXISTS (SELECT 1 FROM rate_limits WHERE scope = $1) \
        ON CONFLICT (scope) DO UPDATE SET per_second = excluded.per_second, burst = excluded.burst, \
        tokens = CASE WHEN rate_limits.tokens > excluded.burst THEN excluded.burst ELSE rate_limits.tokens END \
        RETURNING scope, per_second, burst, tokens, refilled_at, created_by, created_at";
    pub const ALL: &str = "SELECT scope, per_second, burst, tokens, refilled_at, created_by, created_at, \
        CASE WHEN substr(scope, 1, 5) = 'type:' \
          THEN (SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND held = 2 AND task_type = substr(scope, 6)) \
          ELSE (SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND held = 2 AND concurrency_key = substr(scope, 5)) END AS held \
        FROM rate_limits ORDER BY scope";
    pub const FOR_TASK: &str =
        "SELECT scope, per_second, burst, tokens, refilled_at, created_by, created_at \
        FROM rate_limits WHERE scope = $1 OR scope = $2 ORDER BY scope DESC LIMIT 1";
    pub const DELETE: &str = "DELETE FROM rate_limits WHERE scope = $1";
    pub const SET_BUCKET: &str =
        "UPDATE rate_limits SET tokens = $2, refilled_at = $3 WHERE scope = $1";
    pub const HELD_OF_TYPE: &str = "SELECT id FROM tasks \
        WHERE status = 'queued' AND held = 2 AND task_type = $1 ORDER BY rank DESC, id LIMIT $2";
    pub const HELD_OF_KEY: &str = "SELECT id FROM tasks \
        WHERE status = 'queued' AND held = 2 AND concurrency_key = $1 ORDER BY rank DESC, id LIMIT $2";
    /// A released task without a key is claimable; a keyed one is held for
    /// its key's admission (`keys.rs`), like any keyed task that arrives.
    pub const RELEASE: &str = "UPDATE tasks SET held = \
        CASE WHEN concurrency_key IS NULL THEN 0 ELSE 1 END WHERE id = $1 AND held = 2";
}

/// A rate-held task's id, as the release reads it.
type HeldTask = i64;

/// Most tasks one bucket releases in one pass.
const RELEASE_PAGE: i64 = 10_000;

macro_rules! rate_limit_store {
    ($store:ty, $db:ty, $read:ident, $lock:literal, $triggers:expr) => {
        impl $store {
            /// Releases held tasks: a keyed one goes on to its key's
            /// admission, like any keyed task that arrives.
            async fn release_tasks(
                tx: &mut sqlx::Transaction<'_, $db>,
                tasks: &[HeldTask],
            ) -> Result<()> {
                for id in tasks {
                    sqlx::query(sql::RELEASE)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn held_by(
                tx: &mut sqlx::Transaction<'_, $db>,
                scope: &str,
                limit: i64,
            ) -> Result<Vec<HeldTask>> {
                let (query, name) = match (scope.strip_prefix("type:"), scope.strip_prefix("key:")) {
                    (Some(t), _) => (sql::HELD_OF_TYPE, t),
                    (_, Some(k)) => (sql::HELD_OF_KEY, k),
                    _ => return Ok(Vec::new()),
                };
                Ok(sqlx::query_scalar(query)
                    .bind(name)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await?)
            }
        }

        impl RateLimitStore for $store {
            async fn put_rate_limit(
                &self,
                scope: &str,
                per_second: f64,
                burst: i64,
                by: &str,
                now_us: i64,
            ) -> Result<RateLimitRow> {
                let mut tx = self.begin_write().await?;
                for trigger in $triggers {
                    sqlx::query(trigger).execute(&mut *tx).await?;
                }
                let row = sqlx::query_as::<_, RateLimitRow>(sql::PUT)
                    .bind(scope)
                    .bind(per_second)
                    .bind(burst)
                    .bind(now_us)
                    .bind(by)
                    .bind(drover_protocol::limits::MAX_RATE_LIMITS)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| {
                        super::too_many("rate limit", drover_protocol::limits::MAX_RATE_LIMITS)
                    })?;
                tx.commit().await?;
                Ok(row)
            }

            async fn rate_limits(&self) -> Result<Vec<RateLimitRow>> {
                Ok(sqlx::query_as::<_, RateLimitRow>(sql::ALL)
                    .fetch_all(self.$read())
                    .await?)
            }

            async fn rate_limit_for(
                &self,
                task_type: &str,
                key: Option<&str>,
            ) -> Result<Option<RateLimitRow>> {
                Ok(sqlx::query_as::<_, RateLimitRow>(sql::FOR_TASK)
                    .bind(format!("type:{task_type}"))
                    .bind(key.map(|k| format!("key:{k}")))
                    .fetch_optional(self.$read())
                    .await?)
            }

            async fn delete_rate_limit(&self, scope: &str) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let gone = sqlx::query(sql::DELETE)
                    .bind(scope)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(StoreError::NotFound);
                }
                loop {
                    let held = Self::held_by(&mut tx, scope, RELEASE_PAGE).await?;
                    Self::release_tasks(&mut tx, &held).await?;
                    if (held.len() as i64) < RELEASE_PAGE {
                        break;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn release_rate_limited(&self, now_us: i64) -> Result<(u64, usize)> {
                let mut tx = self.begin_write().await?;
                let limits: Vec<RateLimitRow> = sqlx::query_as(concat!(
                    "SELECT scope, per_second, burst, tokens, refilled_at, created_by, created_at \
                     FROM rate_limits ORDER BY scope",
                    $lock
                ))
                .fetch_all(&mut *tx)
                .await?;
                let count = limits.len();
                if count == 0 {
                    return Ok((0, 0));
                }
                let mut released = 0u64;
                for l in limits {
                    let mut tokens =
                        refill(l.tokens, l.per_second, l.burst, now_us - l.refilled_at);
                    let whole = (tokens.floor() as i64).clamp(0, RELEASE_PAGE);
                    if whole > 0 {
                        let held = Self::held_by(&mut tx, &l.scope, whole).await?;
                        Self::release_tasks(&mut tx, &held).await?;
                        tokens -= held.len() as f64;
                        released += held.len() as u64;
                        if (held.len() as i64) < whole {
                            tokens = idle(tokens, l.burst);
                        }
                    }
                    sqlx::query(sql::SET_BUCKET)
                        .bind(&l.scope)
                        .bind(tokens)
                        .bind(now_us)
                        .execute(&mut *tx)
                        .await?;
                }
                if released > 0 {
                    // Agents long-polling other instances hear of them.
                    Self::notify_work(&mut tx).await?;
                }
                tx.commit().await?;
                Ok((released, count))
            }
        }
    };
}

/// SQLite holds arriving tasks with an AFTER INSERT trigger.
const SQLITE_TRIGGERS: [&str; 1] = [
    r#"CREATE TRIGGER IF NOT EXISTS tasks_rate_arrive AFTER INSERT ON tasks
WHEN NEW.status = 'queued' AND EXISTS (SELECT 1 FROM rate_limits
    WHERE scope = 'type:' || NEW.task_type OR scope = 'key:' || NEW.concurrency_key)
BEGIN
    UPDATE tasks SET held = 2 WHERE id = NEW.id;
END;"#,
];

/// PostgreSQL holds them in a BEFORE INSERT trigger (its function,
/// `drover_rate_hold`, is made by the migrations).
const PG_TRIGGERS: [&str; 1] = [
    "CREATE OR REPLACE TRIGGER tasks_rate_arrive BEFORE INSERT ON tasks \
    FOR EACH ROW WHEN (NEW.status = 'queued') \
    EXECUTE FUNCTION drover_rate_hold()",
];

rate_limit_store!(
    super::sqlite::SqliteStore,
    sqlx::Sqlite,
    reader,
    "",
    SQLITE_TRIGGERS
);
rate_limit_store!(
    super::postgres::PgStore,
    sqlx::Postgres,
    pool,
    " FOR UPDATE",
    PG_TRIGGERS
);

delegate_to_backend!(RateLimitStore {
    async fn put_rate_limit(&self, scope: &str, per_second: f64, burst: i64, by: &str, now_us: i64) -> Result<RateLimitRow>;
    async fn rate_limits(&self) -> Result<Vec<RateLimitRow>>;
    async fn rate_limit_for(&self, task_type: &str, key: Option<&str>) -> Result<Option<RateLimitRow>>;
    async fn delete_rate_limit(&self, scope: &str) -> Result<()>;
    async fn release_rate_limited(&self, now_us: i64) -> Result<(u64, usize)>;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        assert_eq!(refill(0.0, 20.0, 5, 100_000), 2.0);
        assert_eq!(
            refill(0.0, 20.0, 5, 10_000_000),
            25.0,
            "a second owed past the burst"
        );
        assert_eq!(idle(25.0, 5), 5.0);
        assert_eq!(
            refill(0.5, 1.0, 1, -5),
            0.5,
            "a clock step back adds nothing"
        );
        let row = RateLimitRow {
            scope: "type:x".into(),
            per_second: 4.0,
            burst: 1,
            tokens: 0.0,
            refilled_at: 0,
            created_by: "a".into(),
            created_at: 0,
            held: 0,
        };
        assert_eq!(row.next_release_us(0), 250_000);
        assert_eq!(row.next_release_us(300_000), 300_000);
    }
}
