//! Readiness, for `/readyz`: whether this instance can do its work now, as
//! named checks a load balancer or an operator reads. Liveness (`/healthz`)
//! is the process answering at all and needs nothing from here.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::migrate::Migrator;

use super::{Backend, Store};

/// Longest a readiness check waits for the database: a probe must answer
/// while the database hangs, not hang with it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One named check; `problem` says what is wrong, `None` when it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub problem: Option<String>,
}

impl Check {
    fn new(name: &'static str, outcome: std::result::Result<(), String>) -> Self {
        Self {
            name,
            problem: outcome.err(),
        }
    }
}

async fn bounded(
    check: impl std::future::Future<Output = std::result::Result<(), String>>,
) -> std::result::Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())))
}

/// The database answers and has every migration of `$migrator` applied,
/// as the two checks' outcomes (a macro: the two pools are of two types).
macro_rules! reachable_and_migrated {
    ($pool:expr, $migrator:expr) => {{
        let pool = $pool;
        let reachable = bounded(async {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(pool)
                .await
                .map(drop)
                .map_err(|e| hidden("unreachable", e))
        })
        .await;
        let migrations = bounded(async {
            let done: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(pool)
                    .await
                    .map_err(|e| hidden("cannot read the applied migrations", e))?;
            missing(&$migrator, done)
        })
        .await;
        (reachable, migrations)
    }};
}

/// `/readyz` answers anyone: the database's own message (its host, its
/// database's name) goes to the log, the answer says only what failed.
fn hidden(what: &str, error: sqlx::Error) -> String {
    tracing::warn!(%error, "readiness: {what}");
    what.to_string()
}

/// Every migration of `migrator` is among `done`.
fn missing(migrator: &Migrator, done: Vec<i64>) -> std::result::Result<(), String> {
    let done: BTreeSet<i64> = done.into_iter().collect();
    let missing: Vec<String> = migrator
        .iter()
        .filter(|m| !done.contains(&m.version))
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not applied: {}", missing.join(", ")))
    }
}

impl Store {
    /// The database answers, every migration this build knows is applied,
    /// and (PostgreSQL) the `LISTEN` connection that carries other
    /// instances' notices is up.
    pub async fn readiness(&self) -> Vec<Check> {
        let (reachable, migrations) = match &self.0 {
            Backend::Sqlite(s) => reachable_and_migrated!(s.reader(), super::sqlite::MIGRATIONS),
            Backend::Postgres(pg) => {
                reachable_and_migrated!(pg.pool(), super::postgres::MIGRATIONS)
            }
        };
        let mut checks = vec![
            Check::new("database", reachable),
            Check::new("migrations", migrations),
        ];
        if let Backend::Postgres(pg) = &self.0 {
            let up = pg.listening().load(Ordering::Relaxed);
            checks.push(Check::new(
                "listener",
                if up {
                    Ok(())
                } else {
                    Err("the LISTEN connection for other instances' notices is down".into())
                },
            ));
        }
        checks
    }
}
