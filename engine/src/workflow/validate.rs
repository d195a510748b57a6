//! Parsing and validating a definition on upload. Every problem names the
//! step and what is wrong, so the author can fix it without guessing.

use std::collections::{BTreeMap, BTreeSet};

use drover_protocol::api::NewTask;
use drover_protocol::limits::{
    DEFAULT_MAX_FOR_EACH_ITEMS, MAX_APPROVAL_TIMEOUT_MS, MAX_DEFINITION_BYTES, MAX_INPUTS,
    MAX_STEPS, MAX_WAIT_MS,
};
use serde_json::Value;

use super::definition::{Definition, Step, TaskStep};
use super::{inputs, plan, template};
use crate::domain::{check_name, PriorityWeights, TaskSpec};
use crate::error::FieldError;

/// Parses YAML or JSON and validates it with the default limits.
pub fn parse_definition(text: &str) -> Result<Definition, Vec<FieldError>> {
    parse_definition_with(text, DEFAULT_MAX_FOR_EACH_ITEMS)
}

/// Parses YAML or JSON and validates it; returns every problem found. A
/// `for_each` whose list is known at upload (it uses no variables, only
/// functions like `range`) may have at most `max_for_each_items` items.
pub fn parse_definition_with(
    text: &str,
    max_for_each_items: usize,
) -> Result<Definition, Vec<FieldError>> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(vec![FieldError::new(
            "definition",
            format!(
                "is {} bytes; the limit is {MAX_DEFINITION_BYTES}",
                text.len()
            ),
        )]);
    }
    let def: Definition = if text.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| vec![parse_error(e.path().to_string(), e.inner().to_string())])?
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| vec![parse_error(e.path().to_string(), e.inner().to_string())])?
    };
    let mut def = def;
    def.input_order = declared_input_order(text, &def);
    let errors = validate(&def, max_for_each_items);
    if errors.is_empty() {
        Ok(def)
    } else {
        Err(errors)
    }
}

/// The names of `inputs` as the text declares them. YAML's mappings keep
/// their order (and a JSON text is read as YAML for this); whatever cannot
/// be read so falls back to the names in order.
fn declared_input_order(text: &str, def: &Definition) -> Vec<String> {
    let declared: Vec<String> = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        .ok()
        .and_then(|v| v.get("inputs")?.as_mapping().cloned())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let complete =
        declared.len() == def.inputs.len() && declared.iter().all(|n| def.inputs.contains_key(n));
    if complete {
        declared
    } else {
        def.inputs.keys().cloned().collect()
    }
}

fn parse_error(path: String, message: String) -> FieldError {
    let field = if path == "." || path.is_empty() {
        "definition".to_string()
    } else {
        path
    };
    FieldError::new(field, format!("invalid definition: {message}"))
}

/// The task parser's verdict on task settings, so that a definition that
/// validates makes tasks the store accepts (the payload is checked too when
/// it has no templates; a rendered one is checked when the run makes it).
fn task_problem(task: NewTask) -> Option<FieldError> {
    TaskSpec::parse(task, &PriorityWeights::default(), |_| true).err()
}

/// Whether the step itself sets the setting an error names (else it comes
/// from `defaults`, which are checked, and reported, on their own).
fn step_sets(t: &TaskStep, field: &str) -> bool {
    match field.split(['.', '[']).next().unwrap_or(field) {
        "urgency" => t.urgency.is_some(),
        "time_sensitivity" => t.time_sensitivity.is_some(),
        "importance" => t.importance.is_some(),
        "max_attempts" => t.max_attempts.is_some(),
        "timeout_ms" => t.timeout_ms.is_some(),
        "retry_backoff_ms" => t.retry_backoff_ms.is_some(),
        "required_labels" => !t.required_labels.is_empty(),
        _ => true,
    }
}

/// Every problem of a parsed definition.
pub fn validate(def: &Definition, max_for_each_items: usize) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = check_name("name", &def.name) {
        errors.push(e);
    }
    if def.steps.is_empty() {
        errors.push(FieldError::new(
            "steps",
            "a workflow needs at least one step",
        ));
    }
    if def.steps.len() > MAX_STEPS {
        errors.push(FieldError::new(
            "steps",
            format!("at most {MAX_STEPS} steps, got {}", def.steps.len()),
        ));
        return errors;
    }
    if def.inputs.len() > MAX_INPUTS {
        errors.push(FieldError::new(
            "inputs",
            format!("at most {MAX_INPUTS} inputs, got {}", def.inputs.len()),
        ));
    }
    for (name, spec) in &def.inputs {
        let field = format!("inputs.{name}");
        if let Err(e) = check_name(&field, name) {
            errors.push(e);
        }
        if spec.kind == super::InputType::Enum && spec.values.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.values"),
                format!("input {name:?}: an enum needs its values"),
            ));
        }
        if let Some(d) = &spec.default {
            if let Err(m) = inputs::fits(spec, d) {
                errors.push(FieldError::new(
                    format!("{field}.default"),
                    format!("input {name:?}: the default {m}"),
                ));
            }
        }
    }
    let d = &def.defaults;
    if let Some(e) = task_problem(NewTask {
        task_type: "defaults".into(),
        urgency: d.urgency,
        time_sensitivity: d.time_sensitivity,
        importance: d.importance,
        max_attempts: d.max_attempts,
        timeout_ms: d.timeout_ms,
        retry_backoff_ms: d.retry_backoff_ms,
        required_labels: d.required_labels.clone(),
        ..NewTask::default()
    }) {
        errors.push(e.within("defaults"));
    }

    // Ids and dependencies.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, step) in def.steps.iter().enumerate() {
        let field = format!("steps[{i}].id");
        if let Err(e) = check_name(&field, step.id()) {
            errors.push(e);
        }
        if index.insert(step.id(), i).is_some() {
            errors.push(FieldError::new(
                field,
                format!("duplicate step id {:?}", step.id()),
            ));
        }
    }
    for (i, step) in def.steps.iter().enumerate() {
        for dep in step.on_failure_of() {
            if !index.contains_key(dep.as_str()) {
                errors.push(FieldError::new(
                    format!("steps[{i}].on_failure_of"),
                    format!(
                        "step {:?}: on_failure_of names {dep:?}, which is not a step",
                        step.id()
                    ),
                ));
            }
        }
        for dep in step.depends_on() {
            if !index.contains_key(dep.as_str()) {
                errors.push(FieldError::new(
                    format!("steps[{i}].depends_on"),
                    format!(
                        "step {:?}: depends_on names {dep:?}, which is not a step",
                        step.id()
                    ),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(def, &index) {
        let i = index.get(cycle[0].as_str()).copied().unwrap_or(0);
        errors.push(FieldError::new(
            format!("steps[{i}].depends_on"),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
        return errors;
    }

    // Per step: settings and the names its templates use.
    for (i, step) in def.steps.iter().enumerate() {
        let field = format!("steps[{i}]");
        let upstream = ancestors(def, step.id(), &index);
        let mut sources: Vec<(String, String, bool)> = Vec::new(); // (field, source, is_expression)
        if let Some(w) = step.when() {
            sources.push((format!("{field}.when"), w.to_string(), true));
        }
        let mut per_item = false;
        match step {
            Step::Task(t) => {
                let payload = if template::has_templates(&t.payload) {
                    Value::Null
                } else {
                    t.payload.clone()
                };
                let key = t
                    .concurrency
                    .as_ref()
                    .or(def.defaults.concurrency.as_ref())
                    .map(|c| {
                        if c.key.contains("{{") || c.key.contains("{%") {
                            "k".to_string()
                        } else {
                            c.key.clone()
                        }
                    });
                if let Some(c) = t.concurrency.as_ref().or(def.defaults.concurrency.as_ref()) {
                    sources.push((format!("{field}.concurrency.key"), c.key.clone(), false));
                }
                if let Some(e) = task_problem(plan::new_task(def, t, payload, key)) {
                    if step_sets(t, &e.field) {
                        errors.push(FieldError::new(
                            format!("{field}.{}", e.field),
                            format!("step {:?}: {}", t.id, e.message),
                        ));
                    }
                }
                if t.max_parallel == Some(0) {
                    errors.push(FieldError::new(
                        format!("{field}.max_parallel"),
                        "must be at least 1",
                    ));
                }
                if let Some(f) = &t.for_each {
                    sources.push((format!("{field}.for_each"), f.clone(), true));
                    per_item = true;
                    if let Some(problem) = literal_list_problem(f, max_for_each_items) {
                        errors.push(FieldError::new(
                            format!("{field}.for_each"),
                            format!("step {:?}: {problem}", t.id),
                        ));
                    }
                }
                let mut strings = Vec::new();
                template::strings(&t.payload, &mut strings);
                sources.extend(
                    strings
                        .into_iter()
                        .map(|s| (format!("{field}.payload"), s, false)),
                );
            }
            Step::Wait(w) => {
                let kinds = [
                    w.duration_ms.is_some(),
                    w.until.is_some(),
                    w.event.is_some(),
                ]
                .iter()
                .filter(|k| **k)
                .count();
                if kinds != 1 {
                    errors.push(FieldError::new(
                        field.clone(),
                        format!(
                            "step {:?}: a wait step sets exactly one of duration_ms, until and event",
                            w.id
                        ),
                    ));
                }
                let ms_in_range = |name: &str, v: Option<i64>, errors: &mut Vec<FieldError>| {
                    if let Some(t) = v.filter(|t| !(1..=MAX_WAIT_MS).contains(t)) {
                        errors.push(FieldError::new(
                            format!("{field}.{name}"),
                            format!(
                                "step {:?}: must be between 1 and {MAX_WAIT_MS} (a year), got {t}",
                                w.id
                            ),
                        ));
                    }
                };
                ms_in_range("duration_ms", w.duration_ms, &mut errors);
                if let Some(until) = &w.until {
                    sources.push((format!("{field}.until"), until.clone(), false));
                    if !until.contains("{{")
                        && chrono::DateTime::parse_from_rfc3339(until.trim()).is_err()
                    {
                        errors.push(FieldError::new(
                            format!("{field}.until"),
                            format!("step {:?}: {until:?} is not an RFC 3339 time", w.id),
                        ));
                    }
                }
                if let Some(e) = &w.event {
                    ms_in_range("event.timeout_ms", e.timeout_ms, &mut errors);
                    sources.push((format!("{field}.event.key"), e.key.clone(), false));
                    if !e.key.contains("{{") {
                        if let Err(why) = crate::domain::check_event_key(&e.key) {
                            errors.push(FieldError::new(
                                format!("{field}.event.key"),
                                format!("step {:?}: {why}", w.id),
                            ));
                        }
                    }
                }
            }
            Step::Workflow(w) => {
                if let Err(e) = check_name(&format!("{field}.workflow"), &w.workflow) {
                    errors.push(e);
                }
                if w.version.is_some_and(|v| v < 1) {
                    errors.push(FieldError::new(
                        format!("{field}.version"),
                        format!("step {:?}: versions start at 1", w.id),
                    ));
                }
                for value in w.inputs.values() {
                    let mut strings = Vec::new();
                    template::strings(value, &mut strings);
                    sources.extend(
                        strings
                            .into_iter()
                            .map(|s| (format!("{field}.inputs"), s, false)),
                    );
                }
            }
            Step::Approval(a) => {
                if a.approvers.users.is_empty() && a.approvers.roles.is_empty() {
                    errors.push(FieldError::new(
                        format!("{field}.approvers"),
                        format!("step {:?}: name at least one approver user or role", a.id),
                    ));
                }
                for r in &a.approvers.roles {
                    if drover_protocol::api::Role::parse(r).is_none() {
                        errors.push(FieldError::new(
                            format!("{field}.approvers.roles"),
                            format!("step {:?}: unknown role {r:?}", a.id),
                        ));
                    }
                }
                if let Some(t) = a.timeout_ms {
                    if !(1..=MAX_APPROVAL_TIMEOUT_MS).contains(&t) {
                        errors.push(FieldError::new(
                            format!("{field}.timeout_ms"),
                            format!(
                                "step {:?}: must be between 1 and {MAX_APPROVAL_TIMEOUT_MS} (a year), got {t}",
                                a.id
                            ),
                        ));
                    }
                }
                sources.push((format!("{field}.message"), a.message.clone(), false));
            }
        }
        for (f, source, is_expression) in sources {
            match template::references(&source, is_expression) {
                Err(e) => errors.push(FieldError::new(
                    f,
                    format!("step {:?}: bad template {source:?}: {e}", step.id()),
                )),
                Ok(names) => {
                    for name in names {
                        if let Some(problem) = check_reference(
                            def,
                            &name,
                            &upstream,
                            per_item && !f.ends_with(".for_each"),
                        ) {
                            errors.push(FieldError::new(
                                f.clone(),
                                format!("step {:?}: {problem}", step.id()),
                            ));
                        }
                    }
                }
            }
        }
    }
    errors
}

/// Why a `for_each` whose list is known now (it uses no variables, only
/// functions like `range`) cannot run: too many items, or no list.
/// Evaluated on fuel, so it ends quickly.
fn literal_list_problem(expr: &str, max: usize) -> Option<String> {
    match template::references(expr, true) {
        Ok(names) if names.iter().all(|n| template::is_global(n)) => {
            template::eval_list(expr, &template::context(&Value::Null), max).err()
        }
        _ => None,
    }
}

/// Why a name used in a template is not available to the step, if it is not.
fn check_reference(
    def: &Definition,
    name: &str,
    upstream: &BTreeSet<String>,
    per_item: bool,
) -> Option<String> {
    let mut parts = name.split('.');
    match (parts.next(), parts.next()) {
        (Some("inputs"), Some(input)) if def.inputs.contains_key(input) => None,
        (Some("inputs"), Some(input)) => Some(format!(
            "uses inputs.{input}, but the workflow declares no input {input:?}"
        )),
        (Some("inputs"), None) => None,
        (Some("steps"), Some(step)) if upstream.contains(step) => None,
        (Some("steps"), Some(step)) if def.step(step).is_some() => Some(format!(
            "uses steps.{step}, which is not upstream of it (add it to depends_on)"
        )),
        (Some("steps"), Some(step)) => Some(format!("uses steps.{step}, which is not a step")),
        (Some("item" | "index"), _) if per_item => None,
        (Some("item" | "index"), _) => Some(format!(
            "uses {name}, which exists only in the payload of a for_each step"
        )),
        (Some("run"), _) => None,
        (Some(global), _) if template::is_global(global) => None,
        _ => Some(format!(
            "uses {name:?}; templates can use inputs, steps, run, and item/index in for_each steps"
        )),
    }
}

/// Every step the given one depends on, directly or not.
fn ancestors(def: &Definition, id: &str, index: &BTreeMap<&str, usize>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = vec![id];
    while let Some(s) = stack.pop() {
        if let Some(&i) = index.get(s) {
            let step = &def.steps[i];
            for dep in step.depends_on().iter().chain(step.on_failure_of()) {
                if seen.insert(dep.clone()) {
                    stack.push(dep);
                }
            }
        }
    }
    seen
}

/// A dependency cycle, as the step ids along it, if there is one.
fn find_cycle(def: &Definition, index: &BTreeMap<&str, usize>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        def: &Definition,
        index: &BTreeMap<&str, usize>,
        i: usize,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::Open;
        path.push(i);
        for dep in def.steps[i].depends_on() {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Open => {
                    let start = path.iter().position(|&p| p == j).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..]
                        .iter()
                        .map(|&p| def.steps[p].id().to_string())
                        .collect();
                    cycle.push(def.steps[j].id().to_string());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(def, index, j, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; def.steps.len()];
    for i in 0..def.steps.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(def, index, i, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match parse_definition(yaml) {
            Ok(_) => vec![],
            Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn inputs_keep_the_order_they_are_declared_in() {
        let yaml = "name: o\ninputs:\n  zeta: { type: string }\n  alpha: { type: number }\n  mid: { type: boolean }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n";
        let def = parse_definition(yaml).expect("parses");
        assert_eq!(def.input_order, ["zeta", "alpha", "mid"]);
        let json = serde_json::to_value(&def).expect("json");
        assert_eq!(
            json["input_order"],
            serde_json::json!(["zeta", "alpha", "mid"])
        );
        let text = r#"{"name": "o", "inputs": {"b": {"type": "string"}, "a": {"type": "string"}}, "steps": [{"id": "x", "type": "task", "task_type": "echo"}]}"#;
        assert_eq!(
            parse_definition(text).expect("parses").input_order,
            ["b", "a"]
        );
        // Stored and read back, the order stays.
        let back: Definition = serde_json::from_value(json).expect("reads back");
        assert_eq!(back.input_order, ["zeta", "alpha", "mid"]);
    }

    #[test]
    fn a_good_definition_parses_from_yaml_and_json() {
        let yaml = "name: ok\ninputs:\n  amount: { type: number, required: true }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: { n: \"{{ inputs.amount }}\" }\n  - id: b\n    type: approval\n    depends_on: [a]\n    approvers: { roles: [approver] }\n    message: \"ok {{ steps.a.output }}?\"\n";
        let def = parse_definition(yaml).unwrap();
        assert_eq!(def.step_ids(), vec!["a", "b"]);
        let json = serde_json::to_string(&def).unwrap();
        assert_eq!(parse_definition(&json).unwrap(), def);
    }

    #[test]
    fn each_problem_names_the_step_and_what_is_wrong() {
        let p = problems("name: x\nsteps:\n  - id: a\n    type: teleport\n");
        assert!(
            p[0].contains("steps[0]") && p[0].contains("teleport"),
            "{p:?}"
        );
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    depends_on: [ghost]\n");
        assert!(p[0].contains("\"a\"") && p[0].contains("ghost"), "{p:?}");
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    depends_on: [b]\n  - id: b\n    type: task\n    task_type: e\n    depends_on: [a]\n");
        assert!(p[0].contains("cycle: a -> b -> a"), "{p:?}");
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n  - id: a\n    type: task\n    task_type: e\n");
        assert!(p[0].contains("duplicate step id"), "{p:?}");
        let p = problems("name: x\ninputs:\n  amount: { type: number }\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    payload: \"{{ inputs.amout }}\"\n");
        assert!(
            p[0].contains("amout") && p[0].contains("steps[0].payload"),
            "{p:?}"
        );
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    payload: \"{{ steps.b.output }}\"\n  - id: b\n    type: task\n    task_type: e\n");
        assert!(p[0].contains("not upstream"), "{p:?}");
        let p = problems(
            "name: x\nsteps:\n  - id: a\n    type: approval\n    approvers: {}\n    message: hi\n",
        );
        assert!(p[0].contains("approver"), "{p:?}");
        let p = problems(
            "name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    urgency: 11\n",
        );
        assert!(p[0].contains("steps[0].urgency"), "{p:?}");
        let p = problems(
            "name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    colour: red\n",
        );
        assert!(p[0].contains("colour"), "{p:?}");
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    payload: \"{{ item }}\"\n");
        assert!(p[0].contains("for_each"), "{p:?}");
    }

    #[test]
    fn settings_the_task_parser_refuses_are_refused_at_upload() {
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    max_attempts: 1000\n");
        assert!(
            p[0].starts_with("steps[0].max_attempts:") && p[0].contains("between 1 and 100"),
            "{p:?}"
        );
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    timeout_ms: 999999999999\n");
        assert!(p[0].starts_with("steps[0].timeout_ms:"), "{p:?}");
        let p = problems("name: x\ndefaults: { retry_backoff_ms: 99999999999 }\nsteps:\n  - id: a\n    type: task\n    task_type: e\n");
        assert_eq!(p.len(), 1, "reported once, at the defaults: {p:?}");
        assert!(p[0].starts_with("defaults.retry_backoff_ms:"), "{p:?}");
        // Four bytes of YAML, six of JSON each: under the definition's cap, over the payload's.
        let big = "\\x01".repeat(drover_protocol::limits::MAX_PAYLOAD_BYTES / 5);
        let p = problems(&format!("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    payload: \"{big}\"\n"));
        assert!(p[0].starts_with("steps[0].payload:"), "{p:?}");
        let p = problems("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    required_labels: [\"a b\"]\n");
        assert!(p[0].starts_with("steps[0].required_labels[0]:"), "{p:?}");
    }

    #[test]
    fn approval_timeouts_that_could_overflow_are_refused() {
        let p = problems(&format!("name: x\nsteps:\n  - id: a\n    type: approval\n    approvers: {{ roles: [admin] }}\n    message: hi\n    timeout_ms: {}\n", i64::MAX));
        assert!(
            p[0].starts_with("steps[0].timeout_ms:") && p[0].contains("a year"),
            "{p:?}"
        );
        let p = problems("name: x\nsteps:\n  - id: a\n    type: approval\n    approvers: { roles: [admin] }\n    message: hi\n    timeout_ms: 0\n");
        assert!(p[0].starts_with("steps[0].timeout_ms:"), "{p:?}");
    }

    #[test]
    fn a_literal_for_each_over_the_cap_is_refused_at_upload() {
        let each = |expr: &str| {
            format!("name: x\nsteps:\n  - id: a\n    type: task\n    task_type: e\n    for_each: \"{expr}\"\n    payload: \"{{{{ item }}}}\"\n")
        };
        let p = problems(&each("range(1000) * 1000"));
        assert!(
            p[0].starts_with("steps[0].for_each:") && p[0].contains("more than 10000 items"),
            "{p:?}"
        );
        assert!(problems(&each("range(100) * 100")).is_empty());
        assert!(parse_definition_with(&each("range(100) * 100"), 9_999).is_err());
        let p = problems(&each("range(100000) | map('string') | list"));
        assert!(p[0].starts_with("steps[0].for_each:"), "{p:?}");
        let p = problems(&each("42"));
        assert!(p[0].contains("not a list"), "{p:?}");
    }

    #[test]
    fn oversized_definitions_are_refused_before_parsing() {
        let text = format!(
            "name: x\ndescription: {}\nsteps: []\n",
            "d".repeat(MAX_DEFINITION_BYTES)
        );
        let p = problems(&text);
        assert!(p[0].starts_with("definition:"), "{p:?}");
    }
}
