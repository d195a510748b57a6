//! The live event stream (`GET /api/v1/events`, server-sent events) that
//! dashboards and tools watch instead of polling.
//!
//! Events are small notices — what changed and its id — not state: a client
//! refetches what it shows. They are published in-process on a broadcast
//! channel and handed to the store for the other instances sharing the
//! database, whose notices `relay.rs` brings back, so a browser connected
//! to any instance sees every change. A slow client that falls behind skips ahead (it is told to
//! refetch) rather than holding memory.

use drover_engine::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

/// A notice that something changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// `tasks`, `task`, `run`, `agent`, `approval`, `workflow`, `schedule`,
    /// `task_log` (the task's log grew).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The instance that raised it (relays skip their own).
    pub origin: String,
}

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    instance: String,
    /// Carries the events to the other instances sharing the database.
    store: Store,
    /// Set on shutdown: streams end, so no open stream holds the server up.
    closed: watch::Sender<bool>,
}

impl EventBus {
    pub fn new(instance: String, store: Store) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            instance,
            store,
            closed: watch::channel(false).0,
        }
    }

    /// Ends every stream (see [`closed`](Self::closed)).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once the bus is closed: streams end there.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// Publishes locally and to the other instances sharing the database.
    pub fn publish(&self, kind: &str, id: Option<i64>, status: Option<&str>) {
        self.publish_many(kind, [(id, status)]);
    }

    /// Publishes several notices of one kind; they reach the other
    /// instances through the store, coalesced with the rest.
    pub fn publish_many<'a>(
        &self,
        kind: &str,
        notices: impl IntoIterator<Item = (Option<i64>, Option<&'a str>)>,
    ) {
        for (id, status) in notices {
            let event = Event {
                kind: kind.to_string(),
                id,
                status: status.map(str::to_string),
                origin: self.instance.clone(),
            };
            if self.store.is_shared() {
                if let Ok(payload) = serde_json::to_string(&event) {
                    self.store.publish_event(payload);
                }
            }
            let _ = self.tx.send(event);
        }
    }

    /// An event from another instance.
    pub fn relay(&self, payload: &str) {
        if let Ok(event) = serde_json::from_str::<Event>(payload) {
            if event.origin != self.instance {
                let _ = self.tx.send(event);
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
