//! Writing the audit log: one call per action worth answering for later
//! (who signed in or failed to, who created or revoked a credential, who
//! uploaded, approved, cancelled or retried what, which agent sent results
//! for someone else's task). The log is append-only in the database.

use drover_engine::store::{AuditStore, NewAuditEntry};
use drover_engine::time::now_us;
use drover_engine::Store;
use serde_json::Value;

/// Records one action. A failure to write is logged and counted, not
/// returned: the action itself has happened (or been refused) already.
pub async fn record(
    store: &Store,
    actor: &str,
    action: &str,
    target: Option<String>,
    detail: Value,
) {
    let entry = NewAuditEntry {
        actor,
        action,
        target: target.as_deref(),
        detail: &detail,
    };
    if let Err(e) = store.append_audit(&entry, now_us()).await {
        metrics::counter!("drover_audit_write_failures_total").increment(1);
        tracing::error!(error = %e, actor, action, ?target, "could not write the audit log");
    }
}

/// The actor name of an agent.
pub fn agent_actor(agent_id: i64) -> String {
    format!("agent:{agent_id}")
}
