//! Webhook triggers on both backends (one statement text each, stamped out
//! per backend by `trigger_store!`).

use super::{Result, Store};
use crate::error::StoreError;

/// A stored trigger.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TriggerRow {
    pub id: i64,
    pub name: String,
    pub workflow: String,
    pub workflow_version: Option<i64>,
    /// JSON object: input → JSON pointer.
    pub inputs: String,
    pub auth: String,
    pub secret: Option<String>,
    pub secret_hash: Option<String>,
    pub prefix: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_fired_at: Option<i64>,
    pub fired_count: i64,
    /// An event trigger: a JSON pointer to the key in the body.
    pub event_key: Option<String>,
    pub event_prefix: Option<String>,
}

/// A trigger to store (checked by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTriggerRow<'a> {
    pub name: &'a str,
    pub workflow: &'a str,
    pub workflow_version: Option<i64>,
    pub inputs: String,
    pub auth: &'static str,
    pub secret: Option<&'a str>,
    pub secret_hash: Option<&'a str>,
    pub prefix: &'a str,
    pub created_by: &'a str,
    pub event_key: Option<&'a str>,
    pub event_prefix: Option<&'a str>,
}

#[allow(async_fn_in_trait)]
pub trait TriggerStore {
    /// `Conflict` if the name is taken or the triggers are at their limit.
    async fn create_trigger(&self, new: &NewTriggerRow<'_>, now_us: i64) -> Result<TriggerRow>;
    async fn trigger_by_name(&self, name: &str) -> Result<Option<TriggerRow>>;
    async fn triggers(&self) -> Result<Vec<TriggerRow>>;
    /// `NotFound` if there was none.
    async fn delete_trigger(&self, id: i64) -> Result<()>;
    async fn trigger_fired(&self, id: i64, now_us: i64) -> Result<()>;
}

const COLUMNS: &str = "id, name, workflow, workflow_version, inputs, auth, secret, secret_hash, \
    prefix, created_by, created_at, last_fired_at, fired_count, event_key, event_prefix";

fn insert() -> String {
    format!(
        "INSERT INTO triggers (name, workflow, workflow_version, inputs, auth, secret, secret_hash, \
         prefix, created_by, created_at, event_key, event_prefix) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $13 \
         WHERE (SELECT COUNT(*) FROM triggers) < $11 RETURNING {COLUMNS}"
    )
}

fn select(tail: &str) -> String {
    format!("SELECT {COLUMNS} FROM triggers {tail}")
}

macro_rules! trigger_store {
    ($store:ty, $write:ident, $read:ident) => {
        impl TriggerStore for $store {
            async fn create_trigger(
                &self,
                new: &NewTriggerRow<'_>,
                now_us: i64,
            ) -> Result<TriggerRow> {
                sqlx::query_as::<_, TriggerRow>(&insert())
                    .bind(new.name)
                    .bind(new.workflow)
                    .bind(new.workflow_version)
                    .bind(&new.inputs)
                    .bind(new.auth)
                    .bind(new.secret)
                    .bind(new.secret_hash)
                    .bind(new.prefix)
                    .bind(new.created_by)
                    .bind(now_us)
                    .bind(drover_protocol::limits::MAX_TRIGGERS)
                    .bind(new.event_key)
                    .bind(new.event_prefix)
                    .fetch_optional(self.$write())
                    .await
                    .map_err(|e| super::name_taken(e, "trigger", new.name))?
                    .ok_or_else(|| super::too_many("trigger", drover_protocol::limits::MAX_TRIGGERS))
            }

            async fn trigger_by_name(&self, name: &str) -> Result<Option<TriggerRow>> {
                Ok(sqlx::query_as::<_, TriggerRow>(&select("WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(self.$read())
                    .await?)
            }

            async fn triggers(&self) -> Result<Vec<TriggerRow>> {
                Ok(sqlx::query_as::<_, TriggerRow>(&select("ORDER BY name"))
                    .fetch_all(self.$read())
                    .await?)
            }

            async fn delete_trigger(&self, id: i64) -> Result<()> {
                let done = sqlx::query("DELETE FROM triggers WHERE id = $1")
                    .bind(id)
                    .execute(self.$write())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn trigger_fired(&self, id: i64, now_us: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE triggers SET last_fired_at = $2, fired_count = fired_count + 1 WHERE id = $1",
                )
                .bind(id)
                .bind(now_us)
                .execute(self.$write())
                .await?;
                Ok(())
            }
        }
    };
}

trigger_store!(super::sqlite::SqliteStore, writer, reader);
trigger_store!(super::postgres::PgStore, pool, pool);

delegate_to_backend!(TriggerStore {
    async fn create_trigger(&self, new: &NewTriggerRow<'_>, now_us: i64) -> Result<TriggerRow>;
    async fn trigger_by_name(&self, name: &str) -> Result<Option<TriggerRow>>;
    async fn triggers(&self) -> Result<Vec<TriggerRow>>;
    async fn delete_trigger(&self, id: i64) -> Result<()>;
    async fn trigger_fired(&self, id: i64, now_us: i64) -> Result<()>;
});
