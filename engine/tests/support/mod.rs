//! Fresh databases for tests: a SQLite file in a temporary directory, or a
//! new PostgreSQL database (dropped when the guard goes) on the server named
//! by `DROVER_TEST_PG`.

#![allow(dead_code, unused_macros)]

use std::path::PathBuf;

use drover_engine::domain::{PriorityWeights, Scheduling, TaskSpec};
use drover_engine::store::QueueStore;
use drover_engine::Store;
use sqlx::{Connection, Executor, PgConnection};

/// Runs each named `async fn name(store: Store)` of the test file once on
/// SQLite and once on PostgreSQL (`#[macro_use] mod support;`).
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { let (store, _guard) = crate::support::sqlite().await; super::$name(store).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { let (store, _guard) = crate::support::postgres().await; super::$name(store).await } )*
        }
    };
}

/// Like `both_backends!`, for tests that also need the database's guard.
macro_rules! both_backends_with_guard {
    ($($name:ident),* $(,)?) => {
        mod sqlite_with_guard {
            $( #[tokio::test] async fn $name() { let (store, guard) = crate::support::sqlite().await; super::$name(store, guard).await } )*
        }
        mod postgres_with_guard {
            $( #[tokio::test] async fn $name() { let (store, guard) = crate::support::postgres().await; super::$name(store, guard).await } )*
        }
    };
}

pub enum Guard {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self {
            Guard::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Guard::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // The test's runtime is ending; drop the database on a fresh one.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            if let Ok(mut c) = PgConnection::connect(&admin_url).await {
                                let _ = c
                                    .execute(
                                        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
                                            .as_str(),
                                    )
                                    .await;
                            }
                        });
                    }
                })
                .join();
            }
        }
    }
}

impl Guard {
    /// The URL of the test's database, for a connection of the test's own
    /// beside the store's.
    pub fn database_url(&self) -> Option<String> {
        match self {
            Guard::Dir(dir) => Some(format!("sqlite://{}", dir.join("test.db").display())),
            Guard::Database { admin_url, name } => admin_url
                .rsplit_once('/')
                .map(|(base, _)| format!("{base}/{name}")),
        }
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        drover_engine::time::now_us() % 1_000_000
    )
}

pub async fn sqlite() -> (Store, Guard) {
    let dir = std::env::temp_dir().join(unique("drover_store"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("test.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    (store, Guard::Dir(dir))
}

pub fn admin_url() -> String {
    std::env::var("DROVER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub async fn postgres() -> (Store, Guard) {
    let admin_url = admin_url();
    let name = unique("drover_test");
    let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required for these tests: cannot connect to {admin_url} ({e}). Start it or set DROVER_TEST_PG.")
    });
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin_url.clone());
    let store = Store::connect(&format!("{base}/{name}"), 10).await.unwrap();
    (store, Guard::Database { admin_url, name })
}

/// The scheduling the store tests run with: equal weights, one point of
/// aging a minute, the default for-each bound, no type limits.
pub const SCHED: Scheduling = Scheduling {
    weights: PriorityWeights {
        urgency: 1.0,
        time_sensitivity: 1.0,
        importance: 1.0,
    },
    aging_points_per_minute: 1.0,
    max_for_each_items: drover_protocol::limits::DEFAULT_MAX_FOR_EACH_ITEMS,
    type_limits: drover_engine::domain::NO_TYPE_LIMITS,
};

/// Submits `specs` at `now` (scheduled with [`SCHED`]); their ids in order.
pub async fn submit_ids(store: &Store, specs: &[TaskSpec], now: i64) -> Vec<i64> {
    let submitted = store.submit(specs, &SCHED, now).await.unwrap();
    submitted.iter().map(|s| s.id).collect()
}
