//! A version's text and the changes between two: the text is the one
//! uploaded, or for a version stored before texts were kept, its stored
//! definition rendered as YAML. The diff is computed here, on the server,
//! so the dashboard's wasm carries no diff code.

use std::time::Duration;

use drover_protocol::workflow::{DiffHunk, DiffLine, LineChange};
use serde_yaml_ng::{Mapping, Value as Yaml};
use similar::{Algorithm, ChangeTag, TextDiff};

use super::Definition;
use crate::error::StoreError;

/// Unchanged lines shown around each change.
pub const DIFF_CONTEXT: usize = 3;

/// The longest a diff may search for the smallest set of changes; past it
/// the answer is still a correct diff, only maybe not the shortest. Texts
/// are at most `MAX_DEFINITION_BYTES`, so this bounds a request's CPU.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// A stored definition (JSON) as YAML, laid out as an author writes one:
/// the document's fields in their declared order, the inputs in the order
/// they were declared (`input_order`, which is not itself shown), and
/// empty defaults and payloads left out.
pub fn render_yaml(definition: &serde_json::Value) -> Result<String, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("definition: {e}"));
    let def: Definition = serde_json::from_value(definition.clone()).map_err(|e| corrupt(&e))?;
    let mut doc = serde_yaml_ng::to_value(&def).map_err(|e| corrupt(&e))?;
    if let Yaml::Mapping(top) = &mut doc {
        top.remove("input_order");
        if top.get("defaults").is_some_and(is_empty) {
            top.remove("defaults");
        }
        if top.get("inputs").is_some_and(is_empty) {
            top.remove("inputs");
        } else if let Some(Yaml::Mapping(inputs)) = top.get_mut("inputs") {
            *inputs = in_declared_order(inputs, &def.input_order);
        }
        if let Some(Yaml::Sequence(steps)) = top.get_mut("steps") {
            for step in steps.iter_mut().filter_map(Yaml::as_mapping_mut) {
                if step.get("payload").is_some_and(Yaml::is_null) {
                    step.remove("payload");
                }
            }
        }
    }
    serde_yaml_ng::to_string(&doc).map_err(|e| corrupt(&e))
}

fn is_empty(v: &Yaml) -> bool {
    match v {
        Yaml::Mapping(m) => m.is_empty(),
        Yaml::Null => true,
        _ => false,
    }
}

/// `inputs` with the names of `order` first, as ordered there.
fn in_declared_order(inputs: &Mapping, order: &[String]) -> Mapping {
    let rank = |key: &Yaml| {
        key.as_str()
            .and_then(|k| order.iter().position(|o| o == k))
            .unwrap_or(usize::MAX)
    };
    let mut entries: Vec<(&Yaml, &Yaml)> = inputs.iter().collect();
    entries.sort_by_key(|(k, _)| rank(k));
    entries
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The changed lines between two texts, as hunks with context.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineDiff {
    pub hunks: Vec<DiffHunk>,
    pub added: i64,
    pub removed: i64,
}

/// A line diff of `from` and `to` (none when they are the same).
pub fn line_diff(from: &str, to: &str) -> LineDiff {
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(DIFF_TIMEOUT)
        .diff_lines(from, to);
    let mut out = LineDiff::default();
    for group in diff.grouped_ops(DIFF_CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let (old, new) = (
            first.old_range().start..last.old_range().end,
            first.new_range().start..last.new_range().end,
        );
        let mut lines = Vec::new();
        for op in &group {
            for change in diff.iter_changes(op) {
                let kind = match change.tag() {
                    ChangeTag::Equal => LineChange::Same,
                    ChangeTag::Insert => {
                        out.added += 1;
                        LineChange::Added
                    }
                    ChangeTag::Delete => {
                        out.removed += 1;
                        LineChange::Removed
                    }
                };
                lines.push(DiffLine {
                    change: kind,
                    from_line: change.old_index().map(|i| i as i64 + 1),
                    to_line: change.new_index().map(|i| i as i64 + 1),
                    text: change.value().trim_end_matches(['\n', '\r']).to_string(),
                });
            }
        }
        out.hunks.push(DiffHunk {
            from_start: old.start as i64 + 1,
            from_lines: old.len() as i64,
            to_start: new.start as i64 + 1,
            to_lines: new.len() as i64,
            lines,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse_definition;

    #[test]
    fn a_rendering_reads_back_as_the_same_definition_with_inputs_in_declared_order() {
        let text = "name: r\ninputs:\n  zeta: { type: string }\n  alpha: { type: number, required: true }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n";
        let def = parse_definition(text).expect("parses");
        let json = serde_json::to_value(&def).expect("json");
        let yaml = render_yaml(&json).expect("renders");
        assert!(yaml.starts_with("name: r\n"), "{yaml}");
        assert!(!yaml.contains("input_order"), "{yaml}");
        assert!(!yaml.contains("payload"), "{yaml}");
        assert!(!yaml.contains("defaults"), "{yaml}");
        let (zeta, alpha) = (yaml.find("zeta:"), yaml.find("alpha:"));
        assert!(zeta < alpha, "declared order kept: {yaml}");
        let back = parse_definition(&yaml).expect("the rendering parses");
        assert_eq!(serde_json::to_value(&back).expect("json"), json);
    }

    #[test]
    fn a_diff_marks_added_and_removed_lines_with_both_numbers() {
        let from = "a\nb\nc\nd\n";
        let to = "a\nB\nc\nd\ne\n";
        let d = line_diff(from, to);
        assert_eq!((d.added, d.removed), (2, 1));
        assert_eq!(d.hunks.len(), 1);
        let h = &d.hunks[0];
        assert_eq!((h.from_start, h.to_start), (1, 1));
        let shown: Vec<(LineChange, Option<i64>, Option<i64>, &str)> = h
            .lines
            .iter()
            .map(|l| (l.change, l.from_line, l.to_line, l.text.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (LineChange::Same, Some(1), Some(1), "a"),
                (LineChange::Removed, Some(2), None, "b"),
                (LineChange::Added, None, Some(2), "B"),
                (LineChange::Same, Some(3), Some(3), "c"),
                (LineChange::Same, Some(4), Some(4), "d"),
                (LineChange::Added, None, Some(5), "e"),
            ]
        );
        assert_eq!(line_diff(from, from), LineDiff::default());
    }

    #[test]
    fn far_apart_changes_make_separate_hunks() {
        let from: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let to = from
            .replace("line 2\n", "line two\n")
            .replace("line 28\n", "line 28b\n");
        let d = line_diff(&from, &to);
        assert_eq!(d.hunks.len(), 2);
        assert_eq!(d.hunks[1].from_start, 25);
        assert_eq!(
            d.hunks[1].from_lines, 6,
            "three lines before, the change, the last two"
        );
    }
}
