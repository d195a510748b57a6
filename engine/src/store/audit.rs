//! The audit log, on both backends: appended to, read back newest first,
//! never changed (the migrations' triggers refuse updates and deletes).

use super::{Result, Store};
use drover_protocol::credentials::AuditEntry;

/// One thing to record. `detail` is a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub detail: &'a serde_json::Value,
}

/// Which entries to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only actions starting with this (`sign_in` finds `sign_in.failed`).
    pub action_prefix: Option<String>,
    pub actor: Option<String>,
    /// Keyset paging: only ids below this.
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[allow(async_fn_in_trait)]
pub trait AuditStore {
    async fn append_audit(&self, entry: &NewAuditEntry<'_>, now_us: i64) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// The newest `limit` entries about `target` (`agent:7`), newest first.
    async fn audit_about(&self, target: &str, limit: i64) -> Result<Vec<AuditEntry>>;
}

delegate_to_backend!(AuditStore {
    async fn append_audit(&self, entry: &NewAuditEntry<'_>, now_us: i64) -> Result<()>;
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    async fn audit_about(&self, target: &str, limit: i64) -> Result<Vec<AuditEntry>>;
});
