//! The task types gated by approvals: a task of such a type may only be
//! submitted by a run of the workflow that gates it (or by an admin), so no
//! one skips the approval by submitting the task alone.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use drover_engine::store::WorkflowDefStore;
use drover_engine::workflow;
use drover_engine::Store;

/// The gated types as of the newest workflow version id they were worked
/// out from.
pub type GatedTypes = RwLock<Option<(i64, Arc<BTreeMap<String, String>>)>>;

/// The task types gated by approvals (type → the workflow gating it),
/// worked out again only when a workflow version was added since (on any
/// instance): a submit costs one index lookup, not a load and parse of
/// every definition.
pub async fn gated_types(
    store: &Store,
    cache: &GatedTypes,
) -> Result<Arc<BTreeMap<String, String>>, drover_engine::StoreError> {
    let latest = store.latest_workflow_id().await?;
    if let Some((id, gated)) = cache.read().map(|g| g.clone()).unwrap_or(None) {
        if id == latest {
            return Ok(gated);
        }
    }
    let mut defs = Vec::new();
    for wf in store.list_workflows().await? {
        let def: workflow::Definition = serde_json::from_value(wf.definition)?;
        defs.push(def);
    }
    let gated = Arc::new(workflow::gated_task_types(&defs));
    if let Ok(mut c) = cache.write() {
        *c = Some((latest, Arc::clone(&gated)));
    }
    Ok(gated)
}
