//! Cross-instance wake-ups on PostgreSQL: every instance `LISTEN`s on the
//! work channel, and the store `NOTIFY`s it when work becomes claimable, so a
//! task submitted through one instance reaches an agent long-polling another
//! within milliseconds.

use std::sync::Arc;
use std::time::Duration;

use drover_engine::store::postgres_work_channel;
use sqlx::postgres::PgListener;

use crate::dispatcher::Dispatcher;

pub async fn run(pool: sqlx::PgPool, dispatcher: Arc<Dispatcher>) {
    loop {
        match listen(&pool, &dispatcher).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection lost; retrying");
                dispatcher.kick();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn listen(pool: &sqlx::PgPool, dispatcher: &Dispatcher) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(postgres_work_channel()).await?;
    loop {
        listener.recv().await?;
        dispatcher.kick();
    }
}
