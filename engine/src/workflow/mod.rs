//! Workflows without a database: the definition document, its validation,
//! the template language, run inputs, and the planner that decides what a
//! run does next. The store (`crate::store::runs`) loads a run, asks
//! [`plan`] and writes the answer in one transaction; everything here is
//! pure, so it is tested without I/O.

mod definition;
mod gates;
mod inputs;
mod plan;
mod source;
mod template;
mod validate;

pub use definition::{
    ApprovalStep, Defaults, Definition, EventWait, InputSpec, InputType, OnReject, OnTimeout,
    OnWaitTimeout, Step, TaskStep, WaitStep, WorkflowStep,
};
pub use gates::{admin_needed_for, gated_task_types};
pub use inputs::{input_errors_text, validate_inputs};
pub use plan::{plan, run_status, Action, ItemState, RunView, StepState, StepStatus, WaitRequest};
pub use source::{line_diff, render_yaml, LineDiff, DIFF_CONTEXT};
pub use validate::{parse_definition, parse_definition_with};

/// The JSON Schema of a definition, for editors and `/api/v1/schema/workflow.json`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Definition)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    /// `docs/workflow.schema.json` is the published schema; this keeps it
    /// true. `UPDATE_SCHEMA=1 cargo test -p drover-engine schema` rewrites it.
    #[test]
    fn the_schema_in_docs_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/workflow.schema.json");
        let current = serde_json::to_string_pretty(&super::json_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &current).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(stored == current, "docs/workflow.schema.json is stale: run UPDATE_SCHEMA=1 cargo test -p drover-engine schema");
    }
}
