//! `GET /api/v1/events`: the live event stream (server-sent events) of
//! the bus in `services::events`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::http::auth::Caller;
use crate::state::AppState;

/// `GET /api/v1/events`: `event: <kind>`, `data: <json>` per change, and
/// `event: resync` when the client fell behind and should refetch.
pub async fn stream(
    _caller: Caller,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.events.subscribe();
    let closed = state.events.closed();
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
    })
    // The server is stopping: end the response, so the client reconnects
    // (to another instance) instead of holding this one up.
    .take_until(closed);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
