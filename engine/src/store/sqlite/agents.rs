//! Agents on SQLite: registering, sessions, draining, revoking, and the
//! sweeps that end what a gone agent held.

use drover_protocol::api::AgentView;
use sqlx::{Row, Sqlite, Transaction};

use crate::error::StoreError;
use crate::store::rows::agent_view;
use crate::store::{AgentSession, Registered, Registration, Result, Sweep, SweptBecause};

use super::SqliteStore;
use crate::store::sql;

/// An agent's columns as `AgentView` decodes them.
const AGENT_COLUMNS: &str = "id, name, hostname, version, task_types, labels, capacity, running, \
    status, drained, registered_at, last_heartbeat_at";

impl SqliteStore {
    pub(super) async fn register(&self, reg: &Registration<'_>, now_us: i64) -> Result<Registered> {
        let spec = reg.spec;
        let task_types = serde_json::to_string(&spec.task_types)?;
        let labels = serde_json::to_string(&spec.labels)?;
        let mut tx = self.writer.begin().await?;
        let resumed: Option<i64> = match reg.key_hash {
            Some(key) => {
                sqlx::query_scalar(
                    "UPDATE agents SET name = ?1, hostname = ?2, version = ?3, task_types = ?4, labels = ?5, \
                     capacity = ?6, status = CASE WHEN drained THEN 'draining' ELSE 'online' END, token_hash = ?7, enrollment_id = ?8, last_heartbeat_at = ?9 \
                     WHERE key_hash = ?10 AND status <> 'revoked' RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.hostname)
                .bind(&spec.version)
                .bind(&task_types)
                .bind(&labels)
                .bind(spec.capacity)
                .bind(reg.session_hash)
                .bind(reg.enrollment_id)
                .bind(now_us)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let registered = match resumed {
            Some(agent_id) => {
                let keep: Vec<[i64; 2]> = reg
                    .resuming
                    .iter()
                    .map(|l| [l.task_id, l.lease_token])
                    .collect();
                let rows = sqlx::query(
                    "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = 'running' AND agent_id = ?1 \
                     AND NOT EXISTS (SELECT 1 FROM json_each(?2) v \
                       WHERE json_extract(v.value, '$[0]') = tasks.id AND json_extract(v.value, '$[1]') = tasks.lease_token)",
                )
                .bind(agent_id)
                .bind(serde_json::to_string(&keep)?)
                .fetch_all(&mut *tx)
                .await?;
                let sweep =
                    Self::sweep_running(&mut tx, rows, SweptBecause::Restarted, now_us).await?;
                Registered {
                    agent_id,
                    resumed: true,
                    sweep,
                }
            }
            None => {
                // The key of a revoked agent stays refused: the host must
                // be enrolled afresh (with a new key) to come back.
                if let Some(key) = reg.key_hash {
                    let revoked: Option<i64> = sqlx::query_scalar(sql::agents::REVOKED_WITH_KEY)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(id) = revoked {
                        return Err(crate::store::revoked_key(id));
                    }
                }
                let agent_id: i64 = sqlx::query_scalar(
                    "INSERT INTO agents (name, hostname, version, task_types, labels, capacity, running, status, token_hash, \
                     registered_at, last_heartbeat_at, key_hash, enrollment_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 'online', ?7, ?8, ?8, ?9, ?10) RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.hostname)
                .bind(&spec.version)
                .bind(&task_types)
                .bind(&labels)
                .bind(spec.capacity)
                .bind(reg.session_hash)
                .bind(now_us)
                .bind(reg.key_hash)
                .bind(reg.enrollment_id)
                .fetch_one(&mut *tx)
                .await?;
                Registered {
                    agent_id,
                    ..Registered::default()
                }
            }
        };
        tx.commit().await?;
        Ok(registered)
    }

    pub(super) async fn session_by_token(&self, token_hash: &str) -> Result<Option<AgentSession>> {
        let row = sqlx::query(
            // A session whose enrollment token was revoked is refused even
            // if the agent registered as the token was being revoked.
            sql::agents::SESSION,
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(AgentSession {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                status: crate::store::rows::agent_status(&row.try_get::<String, _>("status")?)?,
                capacity: row.try_get("capacity")?,
                running: row.try_get("running")?,
                task_types: serde_json::from_str(&row.try_get::<String, _>("task_types")?)?,
                labels: serde_json::from_str(&row.try_get::<String, _>("labels")?)?,
            })
        })
        .transpose()
    }

    pub(super) async fn deregister(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        let sweep = self
            .retire_agent(
                agent_id,
                sql::agents::DEREGISTER,
                SweptBecause::Deregistered,
                now_us,
            )
            .await?;
        Ok(sweep.unwrap_or_default())
    }

    pub(super) async fn revoke(&self, agent_id: i64, now_us: i64) -> Result<Sweep> {
        self.retire_agent(agent_id, sql::agents::REVOKE, SweptBecause::Revoked, now_us)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub(super) async fn set_draining(&self, agent_id: i64, draining: bool) -> Result<()> {
        let (from, to) = if draining {
            ("online", "draining")
        } else {
            ("draining", "online")
        };
        let done = sqlx::query(sql::agents::SET_STATUS_FROM)
            .bind(to)
            .bind(agent_id)
            .bind(from)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if done == 0 {
            let exists: Option<String> = sqlx::query_scalar(sql::agents::STATUS)
                .bind(agent_id)
                .fetch_optional(&self.writer)
                .await?;
            return Err(match exists {
                None => StoreError::NotFound,
                Some(s) => StoreError::Conflict(format!("agent is {s}")),
            });
        }
        Ok(())
    }

    pub(super) async fn agents_view(&self) -> Result<Vec<AgentView>> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY status IN ('deregistered', 'revoked'), status = 'offline', name, id"
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|row| Ok(agent_view!(row))).collect()
    }

    /// One agent as the list shows it.
    pub(in crate::store) async fn agent_view(&self, id: i64) -> Result<Option<AgentView>> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| Ok(agent_view!(row))).transpose()
    }

    pub(super) async fn mark_silent_offline(
        &self,
        silent_since_us: i64,
        now_us: i64,
    ) -> Result<Sweep> {
        let mut tx = self.writer.begin().await?;
        let agents: Vec<i64> = sqlx::query_scalar(
            "UPDATE agents SET status = 'offline', offline_at = ?2 WHERE status IN ('online', 'draining') AND last_heartbeat_at < ?1 RETURNING id",
        )
        .bind(silent_since_us)
        .bind(now_us)
        .fetch_all(&mut *tx)
        .await?;
        let mut sweep = Sweep::default();
        for &agent in &agents {
            sweep.add(Self::sweep_agent(&mut tx, agent, SweptBecause::Offline, now_us).await?);
        }
        tx.commit().await?;
        sweep.agents_offline = agents;
        Ok(sweep)
    }

    /// Ends the attempts of the running tasks `rows` (id, lease_token, started_at, timeout_ms)
    /// with `lost` unless they ran past their timeout.
    pub(super) async fn sweep_running(
        tx: &mut Transaction<'_, Sqlite>,
        rows: Vec<sqlx::sqlite::SqliteRow>,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Sweep> {
        let mut endings = Vec::with_capacity(rows.len());
        for row in rows {
            endings.push(crate::store::ending_of_sweep(
                row.try_get("id")?,
                row.try_get("lease_token")?,
                row.try_get("started_at")?,
                row.try_get("timeout_ms")?,
                why,
                now_us,
            ));
        }
        let ended = Self::end_attempts(tx, &endings, now_us).await?;
        Ok(crate::store::sweep_of(ended))
    }

    /// Ends the running attempts of one agent (see [`Self::sweep_running`]).
    pub(super) async fn sweep_agent(
        tx: &mut Transaction<'_, Sqlite>,
        agent_id: i64,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Sweep> {
        let rows = sqlx::query(sql::agents::RUNNING_OF)
            .bind(agent_id)
            .fetch_all(&mut **tx)
            .await?;
        Self::sweep_running(tx, rows, why, now_us).await
    }

    /// Moves an agent out of service with `update` (which binds the id and
    /// returns it) and sweeps what it held, in one transaction; `None` if
    /// there is no such agent.
    pub(super) async fn retire_agent(
        &self,
        agent_id: i64,
        update: &str,
        why: SweptBecause,
        now_us: i64,
    ) -> Result<Option<Sweep>> {
        let mut tx = self.writer.begin().await?;
        let found: Option<i64> = sqlx::query_scalar(update)
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(None);
        }
        let sweep = Self::sweep_agent(&mut tx, agent_id, why, now_us).await?;
        tx.commit().await?;
        Ok(Some(sweep))
    }
}
