//! Versioned workflow definitions, on both backends.

use super::{Result, Store};
use drover_protocol::workflow::WorkflowVersion;

#[allow(async_fn_in_trait)]
pub trait WorkflowDefStore {
    /// Stores a validated definition as the next version of `name`, unless
    /// the latest version has the same digest; returns it and whether it is new.
    async fn upload_workflow(
        &self,
        name: &str,
        definition: &serde_json::Value,
        digest: &str,
        created_by: &str,
        now_us: i64,
    ) -> Result<(WorkflowVersion, bool)>;
    /// The latest version of every workflow.
    async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>>;
    /// The id of the newest version of any workflow (0 when there is none):
    /// versions are only ever added, so it changes exactly when the set of
    /// latest versions does, and costs one index lookup.
    async fn latest_workflow_id(&self) -> Result<i64>;
    /// Every version of one workflow, newest first.
    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>>;
    /// One version, or the latest.
    async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>>;
}

delegate_to_backend!(WorkflowDefStore {
    async fn upload_workflow(&self, name: &str, definition: &serde_json::Value, digest: &str, created_by: &str, now_us: i64) -> Result<(WorkflowVersion, bool)>;
    async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>>;
    async fn latest_workflow_id(&self) -> Result<i64>;
    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>>;
    async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>>;
});
