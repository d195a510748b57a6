//! Signals between server instances sharing one database, behind the
//! [`Store`] seam so the server never sees the backend.
//!
//! On PostgreSQL every instance `LISTEN`s on two channels: the work channel
//! (the store `NOTIFY`s it when work becomes claimable, so a task submitted
//! through one instance reaches an agent long-polling another within
//! milliseconds) and the events channel (dashboard notices, relayed so a
//! browser connected to any instance sees every change). SQLite serves one
//! instance: its listener never yields and publishing is a no-op.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{postgres, Backend, Store};

/// The PostgreSQL channel carrying dashboard events between instances.
const EVENTS_CHANNEL: &str = "drover_events";

/// Wait before reconnecting a lost `LISTEN` connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Something another instance did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Work may have become claimable: run a dispatcher round.
    Work,
    /// A dashboard event another instance published (its JSON payload).
    Event(String),
    /// The listening connection was lost and is back: notices may have been
    /// missed meanwhile, so whatever they would have triggered should run.
    Reconnected,
}

/// The signals of the other instances, as they arrive. Dropping it stops
/// listening.
pub struct Signals {
    rx: Option<mpsc::Receiver<Signal>>,
    task: Option<JoinHandle<()>>,
}

impl Signals {
    /// The next signal; never resolves on a backend without other instances.
    pub async fn next(&mut self) -> Option<Signal> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Store {
    /// Starts listening for the other instances' signals. This instance's
    /// own work notices are skipped: it has already woken its dispatcher.
    pub fn listen(&self) -> Signals {
        match &self.0 {
            Backend::Sqlite(_) => Signals {
                rx: None,
                task: None,
            },
            Backend::Postgres(pg) => {
                let (tx, rx) = mpsc::channel(1024);
                let task = tokio::spawn(listen_loop(pg.pool().clone(), pg.listening().clone(), tx));
                Signals {
                    rx: Some(rx),
                    task: Some(task),
                }
            }
        }
    }

    /// Sends a dashboard event's payload to the other instances, after the
    /// changes already committed (coalesced, see `postgres/notifier.rs`).
    pub fn publish_event(&self, payload: String) {
        if let Backend::Postgres(pg) = &self.0 {
            pg.notifier().notify(EVENTS_CHANNEL, payload);
        }
    }

    /// Whether other instances may share this database (and so need
    /// [`publish_event`](Self::publish_event)).
    pub fn is_shared(&self) -> bool {
        matches!(&self.0, Backend::Postgres(_))
    }

    /// How many batches of runs may be advanced at once: SQLite has one
    /// writer; PostgreSQL takes two batches at once.
    pub fn advance_parallelism(&self) -> usize {
        match &self.0 {
            Backend::Sqlite(_) => 1,
            Backend::Postgres(_) => 2,
        }
    }
}

/// Listens until the receiver is gone, reconnecting after a lost connection;
/// `up` says whether the connection is listening now (for `/readyz`).
async fn listen_loop(pool: PgPool, up: Arc<AtomicBool>, tx: mpsc::Sender<Signal>) {
    let mut first = true;
    loop {
        let outcome = listen_once(&pool, &up, &tx, first).await;
        up.store(false, Ordering::Relaxed);
        match outcome {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection lost; retrying");
                first = false;
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        }
    }
}

/// One listener's life; `Ok` when the receiver is gone.
async fn listen_once(
    pool: &PgPool,
    up: &AtomicBool,
    tx: &mpsc::Sender<Signal>,
    first: bool,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([postgres::WORK_CHANNEL, EVENTS_CHANNEL])
        .await?;
    up.store(true, Ordering::Relaxed);
    // Notices sent while the connection was down are lost: say so.
    if !first && tx.send(Signal::Reconnected).await.is_err() {
        return Ok(());
    }
    loop {
        // `try_recv`, not `recv`: the listener reconnects by itself after a
        // lost connection, and `recv` would hide that notices were missed.
        let signal = match listener.try_recv().await? {
            None => {
                tracing::warn!("LISTEN connection lost and made again");
                Signal::Reconnected
            }
            Some(n) if n.channel() == EVENTS_CHANNEL => Signal::Event(n.payload().to_string()),
            Some(n) if n.payload() != postgres::instance_tag() => Signal::Work,
            Some(_) => continue,
        };
        if tx.send(signal).await.is_err() {
            return Ok(());
        }
    }
}
