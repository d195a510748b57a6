//! Approvals an operator cannot remove.
//!
//! An approval step only protects what comes after it if nobody below
//! `admin` can take it away. Two doors lead around one: uploading a new
//! version of the workflow (without the step, or with a step that approves
//! itself), and submitting the protected task type directly. This module
//! decides both; the server asks it on upload and on submit.

use std::collections::{BTreeMap, BTreeSet};

use super::definition::{Definition, OnTimeout, Step};

/// Why replacing `current` (the latest version, if any) with `new` needs
/// the `admin` role, if it does: either version has approval steps, or the
/// new one lets an approval decide itself (`allow_self_approval`,
/// `on_timeout: approve`).
pub fn admin_needed_for(new: &Definition, current: Option<&Definition>) -> Option<String> {
    for step in &new.steps {
        if let Step::Approval(a) = step {
            if a.allow_self_approval {
                return Some(format!("step {:?} sets allow_self_approval: true", a.id));
            }
            if a.on_timeout == OnTimeout::Approve {
                return Some(format!("step {:?} sets on_timeout: approve", a.id));
            }
        }
    }
    if let Some(id) = current.and_then(first_approval) {
        return Some(format!(
            "its current version has the approval step {id:?}, which a new version could change or drop"
        ));
    }
    first_approval(new).map(|id| format!("the new version has the approval step {id:?}"))
}

fn first_approval(def: &Definition) -> Option<&str> {
    def.steps
        .iter()
        .find(|s| matches!(s, Step::Approval(_)))
        .map(Step::id)
}

/// The task types gated by approvals: every task type of a step that runs
/// after an approval step (depends on one, directly or not), in any of
/// these definitions, with the workflow that gates it. Only a workflow run
/// or an admin may submit such a type directly; otherwise an operator could
/// run the approved work without the approval.
pub fn gated_task_types<'a>(
    defs: impl IntoIterator<Item = &'a Definition>,
) -> BTreeMap<String, String> {
    let mut gated = BTreeMap::new();
    for def in defs {
        let approvals: BTreeSet<&str> = def
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Approval(_)))
            .map(Step::id)
            .collect();
        if approvals.is_empty() {
            continue;
        }
        for step in &def.steps {
            let Step::Task(t) = step else { continue };
            if upstream(def, step.id())
                .iter()
                .any(|s| approvals.contains(s.as_str()))
            {
                gated
                    .entry(t.task_type.clone())
                    .or_insert_with(|| def.name.clone());
            }
        }
    }
    gated
}

/// Every step `id` waits for, directly or not.
fn upstream(def: &Definition, id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![id.to_string()];
    while let Some(s) = stack.pop() {
        if let Some(step) = def.step(&s) {
            for dep in step.depends_on().iter().chain(step.on_failure_of()) {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse_definition;

    const GATED: &str = "name: release\nsteps:\n  - id: build\n    type: task\n    task_type: build\n  - id: ok\n    type: approval\n    depends_on: [build]\n    approvers: { roles: [approver] }\n    message: ship?\n  - id: deploy\n    type: task\n    depends_on: [ok]\n    task_type: deploy\n  - id: notify\n    type: task\n    depends_on: [deploy]\n    task_type: notify\n";
    const PLAIN: &str =
        "name: release\nsteps:\n  - id: deploy\n    type: task\n    task_type: deploy\n";

    #[test]
    fn types_after_an_approval_are_gated_and_those_before_are_not() {
        let def = parse_definition(GATED).unwrap();
        let gated = gated_task_types([&def]);
        assert_eq!(
            gated.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["deploy", "notify"]
        );
        assert_eq!(gated["deploy"], "release");
        assert!(gated_task_types([&parse_definition(PLAIN).unwrap()]).is_empty());
    }

    #[test]
    fn changing_an_approval_needs_admin() {
        let gated = parse_definition(GATED).unwrap();
        let plain = parse_definition(PLAIN).unwrap();
        let why = admin_needed_for(&plain, Some(&gated)).unwrap();
        assert!(
            why.contains("current version") && why.contains("\"ok\""),
            "{why}"
        );
        assert!(admin_needed_for(&gated, None)
            .unwrap()
            .contains("new version"));
        assert_eq!(admin_needed_for(&plain, Some(&plain)), None);
        assert_eq!(admin_needed_for(&plain, None), None);
        let self_approving = parse_definition(&GATED.replace(
            "message: ship?",
            "message: ship?\n    allow_self_approval: true",
        ))
        .unwrap();
        assert!(admin_needed_for(&self_approving, Some(&self_approving))
            .unwrap()
            .contains("allow_self_approval"));
        let auto = parse_definition(&GATED.replace(
            "message: ship?",
            "message: ship?\n    timeout_ms: 1\n    on_timeout: approve",
        ))
        .unwrap();
        assert!(admin_needed_for(&auto, None)
            .unwrap()
            .contains("on_timeout: approve"));
    }
}
