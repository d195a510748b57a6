//! Concurrency key admission inside the SQLite writer's own jobs: a submit
//! admits its keyed tasks as it inserts them while their key has room, and
//! a results batch refills the slots its ends free, so on SQLite a keyed
//! task rarely waits for the leader's pass (`store/keys.rs`), which is
//! still what admits after everything else (cancels, sweeps, retries, rate
//! limits, workflow steps). Safe without locks: the writer thread runs one
//! job at a time, the pass included.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use crate::store::keys::admitted_count;
use crate::store::Result;

/// A key's free slots for an arriving task: its limit less the key's
/// admitted tasks; none while the key has held tasks (they come first, by
/// rank).
const ROOM: &str = concat!(
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_held \
      WHERE status = 'queued' AND held = 1 AND concurrency_key = ?1) THEN 0 ELSE ?2 - ",
    admitted_count!("?1"),
    " END"
);

/// The free slots of a key for its best held task (its limit less the
/// key's admitted tasks); no row when nothing of the key is held.
const ROOM_FOR_HELD: &str = concat!(
    "SELECT h.concurrency_limit - ",
    admitted_count!("?1"),
    " FROM tasks h INDEXED BY tasks_held WHERE h.status = 'queued' AND h.held = 1 \
      AND h.concurrency_key = ?1 ORDER BY h.rank DESC, h.id LIMIT 1"
);

const ADMIT: &str = "UPDATE tasks SET held = 0 WHERE id IN ( \
    SELECT id FROM tasks INDEXED BY tasks_held WHERE status = 'queued' AND held = 1 \
    AND concurrency_key = ?1 ORDER BY rank DESC, id LIMIT ?2)";

/// The arrival side: what each keyed task of one submit gets, `held` 0 or
/// 1, given what the batch admitted before it.
#[derive(Default)]
pub(crate) struct Arrivals {
    room: HashMap<String, i64>,
}

impl Arrivals {
    /// 0 if the task's key has a slot for it (taken now), else 1.
    pub(crate) fn held(
        &mut self,
        conn: &Connection,
        key: Option<&str>,
        limit: Option<i64>,
    ) -> Result<i64> {
        let Some(key) = key else { return Ok(0) };
        let room = match self.room.get_mut(key) {
            Some(room) => room,
            None => {
                let room: i64 = conn
                    .prepare_cached(ROOM)?
                    .query_row(rusqlite::params![key, limit.unwrap_or(1)], |r| r.get(0))?;
                self.room.entry(key.to_string()).or_insert(room)
            }
        };
        if *room > 0 {
            *room -= 1;
            Ok(0)
        } else {
            Ok(1)
        }
    }
}

/// Gives the free slots of `keys` to their best held tasks, counting each
/// key now: a results job for the keys its ends freed, the leader's pass
/// for the keys it found with room. Returns how many it admitted.
pub(crate) fn refill<'a>(
    conn: &Connection,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<u64> {
    let mut admitted = 0;
    for key in keys {
        let room: Option<Option<i64>> = conn
            .prepare_cached(ROOM_FOR_HELD)?
            .query_row([key], |r| r.get(0))
            .optional()?;
        let room = room.flatten();
        if let Some(room) = room.filter(|&n| n > 0) {
            admitted += conn
                .prepare_cached(ADMIT)?
                .execute(rusqlite::params![key, room])? as u64;
        }
    }
    Ok(admitted)
}
