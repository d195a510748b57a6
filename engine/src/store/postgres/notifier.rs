//! `NOTIFY`s sent after commit, coalesced, from one connection.
//!
//! A transaction that calls `pg_notify` takes a database-wide lock at commit
//! and holds it until its commit is flushed to the WAL, so every notifying
//! transaction of every instance commits one after the other, and waits for
//! the others' flushes. The hot paths (recording results, the event bus)
//! hand their notices to this instead: one task sends whatever queued up
//! meanwhile as one statement, with duplicates dropped, and the
//! transactions that made the change commit without the lock. A notice is
//! sent after the change it announces is visible; a crash in between loses
//! the notice, not the change (the listeners' dispatchers still run a round
//! at least every second while agents wait).

use std::collections::HashSet;

use sqlx::PgPool;
use tokio::sync::mpsc;

/// At most this many notices per statement.
const BATCH: usize = 1_000;

/// Queues notices for the sending task; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<(&'static str, String)>,
}

impl Notifier {
    /// Starts the sending task on `pool`; it ends when every `Notifier` is dropped.
    pub(super) fn start(pool: PgPool) -> Self {
        let (queue, notices) = mpsc::unbounded_channel();
        tokio::spawn(send_all(pool, notices));
        Self { queue }
    }

    /// Sends `payload` on `channel` soon, once.
    pub fn notify(&self, channel: &'static str, payload: String) {
        // The task only stops when every sender is gone.
        let _ = self.queue.send((channel, payload));
    }
}

async fn send_all(pool: PgPool, mut notices: mpsc::UnboundedReceiver<(&'static str, String)>) {
    while let Some(first) = notices.recv().await {
        let mut seen = HashSet::new();
        let (mut channels, mut payloads) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some((channel, payload)) = next {
            // In the order queued; a repeated notice is sent once.
            if seen.insert((channel, payload.clone())) {
                channels.push(channel);
                payloads.push(payload);
            }
            next = if channels.len() < BATCH {
                notices.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) =
            sqlx::query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)")
                .bind(&channels)
                .bind(&payloads)
                .execute(&pool)
                .await
        {
            tracing::warn!(error = %e, notices = channels.len(), "could not send notifications to the other instances");
        }
    }
}
