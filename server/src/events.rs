//! The live event stream (`GET /api/v1/events`, server-sent events) that
//! dashboards and tools watch instead of polling.
//!
//! Events are small notices — what changed and its id — not state: a client
//! refetches what it shows. They are published in-process on a broadcast
//! channel and handed to the store for the other instances sharing the
//! database, whose notices `relay.rs` brings back, so a browser connected
//! to any instance sees every change. A slow client that falls behind skips ahead (it is told to
//! refetch) rather than holding memory.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::Stream;
use serde::{Deserialize, Serialize};
use drover_engine::Store;
use tokio::sync::broadcast;

use crate::auth::Caller;
use crate::state::AppState;

/// A notice that something changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// `tasks`, `task`, `run`, `agent`, `approval`, `workflow`.
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
}

impl EventBus {
    pub fn new(instance: String, store: Store) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            instance,
            store,
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

/// `GET /api/v1/events`: `event: <kind>`, `data: <json>` per change, and
/// `event: resync` when the client fell behind and should refetch.
pub async fn stream(
    _caller: Caller,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.events.subscribe();
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let item = match rx.recv().await {
            Ok(e) => SseEvent::default()
                .event(e.kind.clone())
                .json_data(&e)
                .unwrap_or_else(|_| SseEvent::default().event("resync")),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                SseEvent::default().event("resync").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(item), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
