//! Versioned workflow definitions, on both backends, with the text each
//! version was uploaded as and how the workflow's runs went.

use super::{Result, Store};
use drover_protocol::workflow::{WorkflowStats, WorkflowVersion};

#[allow(async_fn_in_trait)]
pub trait WorkflowDefStore {
    /// Stores a validated definition as the next version of `name`, with the
    /// text it was uploaded as, unless the latest version has the same
    /// digest (of the definition, so a change to comments or layout alone
    /// makes no new version and keeps the first text); returns it and
    /// whether it is new.
    async fn upload_workflow_source(
        &self,
        name: &str,
        definition: &serde_json::Value,
        source: Option<&str>,
        digest: &str,
        created_by: &str,
        now_us: i64,
    ) -> Result<(WorkflowVersion, bool)>;
    /// [`Self::upload_workflow_source`] without a text, for callers that
    /// hold only the definition: the version's page then shows a rendering.
    async fn upload_workflow(
        &self,
        name: &str,
        definition: &serde_json::Value,
        digest: &str,
        created_by: &str,
        now_us: i64,
    ) -> Result<(WorkflowVersion, bool)> {
        self.upload_workflow_source(name, definition, None, digest, created_by, now_us)
            .await
    }
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
    /// One version with the text it was uploaded as (`None` inside for a
    /// version stored before texts were kept).
    async fn workflow_source(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<(WorkflowVersion, Option<String>)>>;
    /// How the newest `last` finished runs of `name` ended, and how many of
    /// its runs are still going: ranges of `runs_by_workflow`, so the cost
    /// follows `last` and the active runs, not the workflow's history.
    async fn workflow_run_stats(&self, name: &str, last: i64) -> Result<WorkflowStats>;
}

delegate_to_backend!(WorkflowDefStore {
    async fn upload_workflow_source(&self, name: &str, definition: &serde_json::Value, source: Option<&str>, digest: &str, created_by: &str, now_us: i64) -> Result<(WorkflowVersion, bool)>;
    async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>>;
    async fn latest_workflow_id(&self) -> Result<i64>;
    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>>;
    async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Option<WorkflowVersion>>;
    async fn workflow_source(&self, name: &str, version: i64) -> Result<Option<(WorkflowVersion, Option<String>)>>;
    async fn workflow_run_stats(&self, name: &str, last: i64) -> Result<WorkflowStats>;
});

/// The counts of [`WorkflowDefStore::workflow_run_stats`] from its rows
/// (`status, n` of the last finished runs; `active`), on both backends.
pub(super) fn run_stats(
    name: &str,
    last: i64,
    finished_by_status: Vec<(String, i64)>,
    active: i64,
) -> WorkflowStats {
    let of = |status: &str| {
        finished_by_status
            .iter()
            .filter(|(s, _)| s == status)
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    let (succeeded, failed, cancelled) = (of("succeeded"), of("failed"), of("cancelled"));
    WorkflowStats {
        name: name.to_string(),
        last,
        finished: succeeded + failed + cancelled,
        succeeded,
        failed,
        cancelled,
        active,
    }
}
