//! Relays the other instances' signals (see `drover_engine::store::Signal`):
//! work they made claimable wakes this instance's dispatcher, and their
//! dashboard events reach this instance's event stream. With one instance
//! (SQLite) nothing ever arrives.

use std::future::Future;
use std::sync::Arc;

use drover_engine::store::Signal;
use drover_engine::Store;

use crate::services::dispatcher::Dispatcher;
use crate::services::events::EventBus;

/// Runs until `shutdown` resolves.
pub async fn run(
    store: Store,
    dispatcher: Arc<Dispatcher>,
    events: Arc<EventBus>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut signals = store.listen();
    loop {
        let signal = tokio::select! {
            _ = &mut shutdown => return,
            s = signals.next() => s,
        };
        let name = match signal {
            Some(Signal::Work) => {
                dispatcher.kick();
                "work"
            }
            Some(Signal::Reconnected) => {
                dispatcher.kick();
                "reconnected"
            }
            Some(Signal::Event(payload)) => {
                events.relay(&payload);
                "event"
            }
            None => return,
        };
        // Counted so that a test (or an operator) can tell a wake-up that
        // came from another instance from one of the periodic round.
        metrics::counter!("drover_relay_signals_total", "signal" => name).increment(1);
    }
}
