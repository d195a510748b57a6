//! Cross-instance wake-ups on PostgreSQL: every instance `LISTEN`s on the
//! work channel, and the store `NOTIFY`s it when work becomes claimable, so a
//! task submitted through one instance reaches an agent long-polling another
//! within milliseconds.

use std::time::Duration;

use drover_engine::store::{postgres_instance_tag, postgres_work_channel};
use sqlx::postgres::PgListener;

use crate::state::AppState;

/// Also relays the other instances' change events to this instance's
/// event stream (see `events.rs`).
pub async fn run(pool: sqlx::PgPool, state: AppState) {
    let dispatcher = state.dispatcher.clone();
    loop {
        match listen(&pool, &state).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection lost; retrying");
                dispatcher.kick();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn listen(pool: &sqlx::PgPool, state: &AppState) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([postgres_work_channel(), crate::events::CHANNEL])
        .await?;
    loop {
        let n = listener.recv().await?;
        if n.channel() == crate::events::CHANNEL {
            state.events.relay(n.payload());
        } else if n.payload() != postgres_instance_tag() {
            state.dispatcher.kick();
        }
    }
}
