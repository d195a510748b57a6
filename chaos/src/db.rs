//! Read-only access to the database under test, for the checks: the
//! suite's second witness beside the handlers' side-effect log. Every
//! column is cast so one tuple type decodes on both backends.

use anyhow::Result;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{PgPool, SqlitePool};

pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One `tasks` row: id, status, attempts, run id.
pub type TaskRow = (i64, String, i64, Option<i64>);

impl Db {
    pub async fn connect(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let options = SqliteConnectOptions::new().filename(path).read_only(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
            Ok(Db::Postgres(pool))
        }
    }

    /// Rows of `sql` as tuples `T` (which must decode on both backends).
    pub async fn fetch<T>(&self, sql: &str) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(match self {
            Db::Sqlite(p) => sqlx::query_as::<_, T>(sql).fetch_all(p).await?,
            Db::Postgres(p) => sqlx::query_as::<_, T>(sql).fetch_all(p).await?,
        })
    }

    /// Tasks and runs not yet in a final state.
    pub async fn unfinished(&self) -> Result<(i64, i64)> {
        let tasks: Vec<(i64,)> = self
            .fetch(
                "SELECT CAST(count(*) AS BIGINT) FROM tasks WHERE status IN ('queued', 'running')",
            )
            .await?;
        let runs: Vec<(i64,)> = self
            .fetch("SELECT CAST(count(*) AS BIGINT) FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')")
            .await?;
        Ok((
            tasks.first().map(|r| r.0).unwrap_or(0),
            runs.first().map(|r| r.0).unwrap_or(0),
        ))
    }

    pub async fn tasks(&self) -> Result<Vec<TaskRow>> {
        self.fetch(
            "SELECT CAST(id AS BIGINT), CAST(status AS TEXT), CAST(attempts AS BIGINT), CAST(run_id AS BIGINT) FROM tasks",
        )
        .await
    }

    /// Runs: id, status.
    pub async fn runs(&self) -> Result<Vec<(i64, String)>> {
        self.fetch("SELECT CAST(id AS BIGINT), CAST(status AS TEXT) FROM runs")
            .await
    }

    /// Succeeded run tasks per (run, step, item): how many.
    pub async fn step_successes(&self) -> Result<Vec<(i64, String, i64, i64)>> {
        self.fetch(
            "SELECT CAST(run_id AS BIGINT), CAST(step_id AS TEXT), CAST(COALESCE(item_index, -1) AS BIGINT), \
             CAST(count(*) AS BIGINT) FROM tasks WHERE run_id IS NOT NULL AND status = 'succeeded' \
             GROUP BY run_id, step_id, COALESCE(item_index, -1)",
        )
        .await
    }

    /// Steps not succeeded: run, step, status.
    pub async fn unfinished_steps(&self) -> Result<Vec<(i64, String, String)>> {
        self.fetch(
            "SELECT CAST(run_id AS BIGINT), CAST(step_id AS TEXT), CAST(status AS TEXT) FROM run_steps WHERE status <> 'succeeded'",
        )
        .await
    }

    /// The attempt number each succeeded task succeeded in.
    pub async fn succeeded_attempts(&self) -> Result<Vec<(i64, i64)>> {
        self.fetch(
            "SELECT CAST(task_id AS BIGINT), CAST(attempt AS BIGINT) FROM task_attempts WHERE outcome = 'succeeded'",
        )
        .await
    }

    /// When tasks went back to the queue without failing: task, time (µs), kind.
    pub async fn requeues(&self) -> Result<Vec<(i64, i64, String)>> {
        self.fetch(
            "SELECT CAST(task_id AS BIGINT), CAST(at AS BIGINT), CAST(kind AS TEXT) FROM task_events \
             WHERE kind IN ('requeued', 'released', 'lease_expired') ORDER BY id",
        )
        .await
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}
