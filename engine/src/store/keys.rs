//! Concurrency keys (named semaphores) on both backends: admission by the
//! leader, counted from the tasks themselves.
//!
//! A keyed task arrives *held* (`held = 1`: queued, outside the claim
//! index), as does a keyed task a rate limit releases or a retry queues
//! again. [`KeyStore::admit_keys`], called by the leader whenever work
//! changes and on a short tick, lets the best held tasks of each key (rank,
//! then id) into the claim order while the key has fewer *admitted* tasks
//! (queued and not held, or running) than the task's own limit.
//!
//! Why here rather than in triggers on every task write: nothing on the
//! hot path writes anything for a key (a keyed submit or result costs what
//! an unkeyed one does), there is no counter that a missed path could put
//! out of step with the tasks, and no hot key row that every submit and
//! results batch holds locked until it commits. The price is that a keyed
//! task waits for one admission pass (a wake-up on this instance, a tick
//! for changes made on another), and that one leader does the admitting.
//! The write paths still admit what they can without waiting for anyone:
//! on SQLite the writer thread admits on arrival and on ends
//! (`sqlite/keys.rs`); on PostgreSQL a submit admits its tasks as it
//! inserts them, and a results batch refills the keys it frees, each for
//! the keys whose advisory lock it can take at once ([`lock_keys_pg`]).
//!
//! What a pass reads, each through its own index: the keys with held tasks
//! by a loose scan of `tasks_held` (one probe per key, not per task), each
//! key's admitted count through `tasks_key_admitted` (at most its limit),
//! the limit of its best held task through `tasks_held`.

use super::{Result, Store};

#[allow(async_fn_in_trait)]
pub trait KeyStore {
    /// One admission pass over every key with held tasks; returns how many
    /// tasks it let into the claim order.
    async fn admit_keys(&self) -> Result<u64>;
}

/// Most keys one pass looks at (the rest wait for the next pass).
const KEYS_PER_PASS: i64 = 10_000;

/// The count of a key's admitted tasks (queued and let in, or running), as
/// a scalar subquery on `$key` (a column or parameter): the predicate of
/// the `tasks_key_admitted` index, written once so that every count stays
/// on that index.
macro_rules! admitted_count {
    ($key:literal) => {
        concat!(
            "(SELECT COUNT(*) FROM tasks a WHERE a.concurrency_key = ",
            $key,
            " AND a.held = 0 AND a.status IN ('queued', 'running'))"
        )
    };
}
pub(crate) use admitted_count;

/// The keys with held tasks and room, with how much: a loose index scan
/// (the next key after the last) so a key with 100,000 held tasks costs
/// one probe. `$1` bounds the keys read; `$held` is where held tasks are
/// read from (SQLite is told the index: left to itself it walks every
/// queued task by status).
macro_rules! room {
    ($held:literal) => {
        concat!(
            "WITH RECURSIVE w(key, n) AS ( \
              SELECT MIN(concurrency_key), 1 FROM ", $held, " WHERE status = 'queued' AND held = 1 \
              UNION ALL \
              SELECT (SELECT MIN(concurrency_key) FROM ", $held, " \
                      WHERE status = 'queued' AND held = 1 AND concurrency_key > w.key), w.n + 1 \
              FROM w WHERE w.key IS NOT NULL AND w.n < $1), \
            r AS MATERIALIZED ( \
              SELECT w.key AS key, \
                COALESCE((SELECT concurrency_limit FROM ", $held, " WHERE status = 'queued' \
                          AND held = 1 AND concurrency_key = w.key ORDER BY rank DESC, id LIMIT 1), 1) \
                - ", admitted_count!("w.key"), " AS room \
              FROM w WHERE w.key IS NOT NULL) \
            SELECT key, room FROM r WHERE room > 0"
        )
    };
}
const ROOM_SQLITE: &str = room!("tasks INDEXED BY tasks_held");
const ROOM_PG: &str = room!("tasks");

/// SQLite: the keys with room are read outside a write; their refill is a
/// job on the writer thread, the same that results jobs run
/// (`sqlite/keys.rs`), in the next group commit with no lock to wait for.
impl KeyStore for super::sqlite::SqliteStore {
    async fn admit_keys(&self) -> Result<u64> {
        // Read first, outside a write: most passes find nothing.
        let room: Vec<(String, i64)> = sqlx::query_as(ROOM_SQLITE)
            .bind(KEYS_PER_PASS)
            .fetch_all(self.reader())
            .await?;
        if room.is_empty() {
            return Ok(0);
        }
        // Counted again on the writer thread, where the refill after a
        // results job counts too: one mechanism for both.
        let keys: Vec<String> = room.into_iter().map(|(key, _)| key).collect();
        self.hot()
            .run(move |conn| super::sqlite::keys::refill(conn, keys.iter().map(String::as_str)))
            .await
    }
}

/// PostgreSQL: a key's admissions take turns on a transaction-scoped
/// advisory lock of the key (namespace 7305, the key's hash), tried, never
/// waited for: a results batch that cannot have it leaves the key to the
/// holder and to the leader's next pass. Of `$1`, the keys whose lock this
/// transaction now holds.
const LOCK_KEYS: &str = "SELECT k FROM unnest($1::text[]) AS k \
    WHERE pg_try_advisory_xact_lock(7305, hashtext(k))";

/// Takes the admission locks of `keys` (sorted) that no other transaction
/// holds, until `tx` ends; returns the keys it took. What a transaction
/// admits for a key after this counts what the lock's previous holder
/// committed, if counted in a later statement.
pub(crate) async fn lock_keys_pg(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keys: &[String],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(LOCK_KEYS)
        .bind(keys)
        .fetch_all(&mut **tx)
        .await
}

/// Gives the free slots of the locked keys `$1` to their best held tasks,
/// each counted after its lock was taken.
const REFILL_PG: &str = concat!(
    "UPDATE tasks SET held = 0 WHERE id IN ( \
    SELECT h.id FROM unnest($1::text[]) AS k(key) CROSS JOIN LATERAL ( \
      SELECT id FROM tasks WHERE status = 'queued' AND held = 1 AND concurrency_key = k.key \
      ORDER BY rank DESC, id \
      LIMIT GREATEST(0, COALESCE((SELECT concurrency_limit FROM tasks WHERE status = 'queued' \
          AND held = 1 AND concurrency_key = k.key ORDER BY rank DESC, id LIMIT 1), 0) \
        - ",
    admitted_count!("k.key"),
    ")) h)"
);

/// Refills the slots of `keys` (sorted) inside a results transaction, so
/// the same commit's eager dispatch can hand them out; keys another
/// transaction is admitting are skipped. Returns how many it admitted.
pub(crate) async fn refill_pg(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keys: &[String],
) -> Result<u64> {
    let locked = lock_keys_pg(tx, keys).await?;
    if locked.is_empty() {
        return Ok(0);
    }
    // A statement of its own: its snapshot sees every admission committed
    // by the lock's previous holder.
    Ok(sqlx::query(REFILL_PG)
        .bind(&locked)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

impl KeyStore for super::postgres::PgStore {
    async fn admit_keys(&self) -> Result<u64> {
        let room: Vec<(String, i64)> = sqlx::query_as(ROOM_PG)
            .bind(KEYS_PER_PASS)
            .fetch_all(self.pool())
            .await?;
        if room.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        // Two leaders for a moment (a leader change), or a results batch
        // refilling a key, must not fill a key together: each key is
        // admitted under its lock, and counted again once it is held.
        let mut keys: Vec<String> = room.into_iter().map(|(key, _)| key).collect();
        keys.sort();
        let admitted = refill_pg(&mut tx, &keys).await?;
        if admitted > 0 {
            // Agents long-polling other instances hear of them.
            Self::notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(admitted)
    }
}

delegate_to_backend!(KeyStore {
    async fn admit_keys(&self) -> Result<u64>;
});
