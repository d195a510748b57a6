//! The concurrency keys' triggers on SQLite, created with the first keyed
//! task rather than by the migration: a trigger on `tasks` makes every
//! update of a task row dearer (SQLite builds the trigger's old and new rows
//! and gives up its one-pass update even when the trigger's WHEN is false:
//! about a third of the claim and results path in a micro-benchmark, and of
//! the queue benchmark), so a database that never uses keys does not carry
//! them. Once created they stay, with the keys.
//!
//! The count they keep: a task admitted on arrival is counted by
//! `tasks_key_arrive` (its row is not written again); a held task is counted
//! by `tasks_key_admit` when its held flag goes from 1 to 0.

/// `CREATE TRIGGER IF NOT EXISTS`, one statement each: a no-op once they
/// exist.
pub(crate) const KEY_TRIGGERS: [&str; 4] = [
    r#"CREATE TRIGGER IF NOT EXISTS tasks_key_admit AFTER UPDATE OF held ON tasks
WHEN OLD.held = 1 AND NEW.held = 0 AND NEW.concurrency_key IS NOT NULL
BEGIN
    UPDATE concurrency_keys SET admitted = admitted + 1 WHERE key = NEW.concurrency_key;
END;"#,
    // A keyed task arrives: held, then admitted at once if its key has room.
    r#"CREATE TRIGGER IF NOT EXISTS tasks_key_arrive AFTER INSERT ON tasks
WHEN NEW.concurrency_key IS NOT NULL AND NEW.status = 'queued'
BEGIN
    INSERT INTO concurrency_keys (key, admitted, max_admitted)
        VALUES (NEW.concurrency_key, 0, NEW.concurrency_limit)
        ON CONFLICT (key) DO UPDATE SET max_admitted = excluded.max_admitted
        WHERE max_admitted <> excluded.max_admitted;
    UPDATE tasks SET held = 1 WHERE id = NEW.id
        AND (SELECT admitted >= max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
    UPDATE concurrency_keys SET admitted = admitted + 1 WHERE key = NEW.concurrency_key
        AND (SELECT held FROM tasks WHERE id = NEW.id) = 0;
END;"#,
    // An admitted task ends: its slot goes to the best held task of its key.
    r#"CREATE TRIGGER IF NOT EXISTS tasks_key_release AFTER UPDATE OF status ON tasks
WHEN NEW.concurrency_key IS NOT NULL AND OLD.held = 0
    AND OLD.status IN ('queued', 'running') AND NEW.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE concurrency_keys SET admitted = admitted - 1 WHERE key = NEW.concurrency_key;
    UPDATE tasks SET held = 0 WHERE id = (
            SELECT id FROM tasks WHERE status = 'queued' AND held = 1
                AND concurrency_key = NEW.concurrency_key ORDER BY rank DESC, id LIMIT 1)
        AND (SELECT admitted < max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
END;"#,
    // A keyed task queued again after it ended (a retry): admitted or held
    // as if it arrived.
    r#"CREATE TRIGGER IF NOT EXISTS tasks_key_again AFTER UPDATE OF status ON tasks
WHEN NEW.concurrency_key IS NOT NULL AND NEW.status = 'queued'
    AND OLD.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE tasks SET held = 1 WHERE id = NEW.id AND held = 0
        AND (SELECT admitted >= max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
    UPDATE tasks SET held = 0 WHERE id = NEW.id AND held = 1
        AND (SELECT admitted < max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
    UPDATE concurrency_keys SET admitted = admitted + 1 WHERE key = NEW.concurrency_key
        AND OLD.held = 0 AND (SELECT held FROM tasks WHERE id = NEW.id) = 0;
END;"#,
];

/// Whether any of `keys` is set: then the triggers must exist before the
/// tasks are inserted.
pub(crate) fn any_key<'a>(mut keys: impl Iterator<Item = Option<&'a str>>) -> bool {
    keys.any(|k| k.is_some())
}
