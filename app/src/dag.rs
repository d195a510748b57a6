//! Lays a workflow's steps out left to right for the run page's graph:
//! a step's column is the longest chain of dependencies before it, and
//! within a column steps are ordered by where their parents sit, which
//! keeps edges short and crossings few even with 50+ steps.

use std::collections::HashMap;

use serde_json::Value;

/// A step as the graph needs it, read from the definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DagStep {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    /// Compensation steps run when these fail (drawn dashed).
    pub on_failure_of: Vec<String>,
    pub fan_out: bool,
    pub conditional: bool,
    /// What a `wait` or `workflow` step waits for, as defined.
    pub wait: Option<WaitDef>,
}

/// A `wait` or `workflow` step's definition: what the run page needs to
/// explain a wait (its time-out rule, the child workflow).
#[derive(Debug, Clone, PartialEq)]
pub enum WaitDef {
    /// `duration_ms`, or `until` (a template).
    Sleep {
        duration_ms: Option<i64>,
        until: Option<String>,
    },
    /// `event`: its key (a template), time-out and what a time-out does.
    Event {
        key: String,
        timeout_ms: Option<i64>,
        continues: bool,
    },
    /// A child run of `workflow`, version pinned at upload.
    Workflow { name: String, version: Option<i64> },
}

impl WaitDef {
    fn of(step: &Value) -> Option<Self> {
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(String::from);
        match step.get("type").and_then(Value::as_str)? {
            "wait" => Some(match step.get("event").filter(|e| e.is_object()) {
                Some(e) => WaitDef::Event {
                    key: text(e, "key").unwrap_or_default(),
                    timeout_ms: e.get("timeout_ms").and_then(Value::as_i64),
                    continues: e.get("on_timeout").and_then(Value::as_str) == Some("continue"),
                },
                None => WaitDef::Sleep {
                    duration_ms: step.get("duration_ms").and_then(Value::as_i64),
                    until: text(step, "until"),
                },
            }),
            "workflow" => Some(WaitDef::Workflow {
                name: text(step, "workflow").unwrap_or_default(),
                version: step.get("version").and_then(Value::as_i64),
            }),
            _ => None,
        }
    }

    /// What the step does, in a few words, for the workflow's step list.
    pub fn summary(&self) -> String {
        let span = |ms: i64| crate::format::duration_us(ms.saturating_mul(1000));
        match self {
            WaitDef::Sleep {
                duration_ms: Some(ms),
                ..
            } => format!("sleeps {}", span(*ms)),
            WaitDef::Sleep { until: Some(t), .. } => format!("sleeps until {t}"),
            WaitDef::Sleep { .. } => "sleeps".into(),
            WaitDef::Event {
                key,
                timeout_ms: Some(ms),
                continues,
            } => format!(
                "waits for event {key}; after {} it {}",
                span(*ms),
                if *continues { "continues" } else { "fails" }
            ),
            WaitDef::Event { key, .. } => format!("waits for event {key}"),
            WaitDef::Workflow {
                name,
                version: Some(v),
            } => format!("runs workflow {name} v{v}"),
            WaitDef::Workflow { name, .. } => format!("runs workflow {name}"),
        }
    }

    /// The graph node's second line: what kind of wait.
    pub fn label(&self) -> &'static str {
        match self {
            WaitDef::Sleep { .. } => "sleep",
            WaitDef::Event { .. } => "event wait",
            WaitDef::Workflow { .. } => "sub-workflow",
        }
    }
}

pub fn steps_of(definition: &Value) -> Vec<DagStep> {
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    definition
        .get("steps")
        .and_then(Value::as_array)
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| {
                    Some(DagStep {
                        id: s.get("id")?.as_str()?.to_string(),
                        kind: s
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("task")
                            .to_string(),
                        depends_on: strings(s, "depends_on"),
                        on_failure_of: strings(s, "on_failure_of"),
                        fan_out: s.get("for_each").is_some_and(|v| !v.is_null()),
                        conditional: s.get("when").is_some_and(|v| !v.is_null()),
                        wait: WaitDef::of(s),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

// Whole pixels: the browser build then needs no float formatting.
pub const NODE_W: i64 = 168;
pub const NODE_H: i64 = 40;
pub const COL_GAP: i64 = 56;
pub const ROW_GAP: i64 = 14;
pub const PAD: i64 = 8;
/// From the main path's last row to the compensation lane's first: room
/// for the lane's rule and its name.
pub const LANE_GAP: i64 = 40;

impl DagStep {
    /// A compensation step (`on_failure_of`): drawn in its own lane.
    pub fn compensates(&self) -> bool {
        !self.on_failure_of.is_empty()
    }
}

/// An edge of the graph, by step index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// From a step to the compensation that runs if it fails.
    pub compensation: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Top-left corner of each step's box, by step index.
    pub pos: Vec<(i64, i64)>,
    pub edges: Vec<Edge>,
    /// Where the compensation lane begins (its rule), below every step of
    /// the main path; `None` when no step compensates.
    pub lane_y: Option<i64>,
    pub width: i64,
    pub height: i64,
}

/// Places the steps: columns by dependency depth; the main path's steps in
/// rows at the top, compensation steps in rows of their own lane below
/// them, so the path a run takes when nothing fails reads on its own.
pub fn layout(steps: &[DagStep]) -> Layout {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let parents: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| {
            s.depends_on
                .iter()
                .chain(&s.on_failure_of)
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    // Longest path from a root; definitions are acyclic (checked on upload),
    // and the pass count bound keeps a bad one from looping.
    let mut col = vec![0usize; steps.len()];
    for _ in 0..steps.len() {
        let mut changed = false;
        for i in 0..steps.len() {
            let c = parents[i].iter().map(|&p| col[p] + 1).max().unwrap_or(0);
            if c > col[i] {
                col[i] = c;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let columns = col.iter().copied().max().map_or(0, |m| m + 1);
    let mut row = vec![0usize; steps.len()];
    // The rows each lane needs: [main path, compensation].
    let mut tallest = [0usize; 2];
    for lane in [false, true] {
        for c in 0..columns {
            let mut members: Vec<usize> = (0..steps.len())
                .filter(|&i| col[i] == c && steps[i].compensates() == lane)
                .collect();
            // Order by the mean row of the parents (already placed), then by
            // definition order.
            let key = |i: usize| -> f64 {
                let ps = &parents[i];
                if ps.is_empty() {
                    i as f64
                } else {
                    ps.iter().map(|&p| row[p] as f64).sum::<f64>() / ps.len() as f64
                }
            };
            members.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
            for (r, &i) in members.iter().enumerate() {
                row[i] = r;
            }
            tallest[lane as usize] = tallest[lane as usize].max(members.len());
        }
    }
    let rows_height = |n: usize| n as i64 * (NODE_H + ROW_GAP) - ROW_GAP.min(n as i64 * ROW_GAP);
    let main_bottom = PAD + rows_height(tallest[0]);
    let lane_y = (tallest[1] > 0).then_some(main_bottom + LANE_GAP / 4);
    let lane_top = main_bottom + LANE_GAP;
    let pos = (0..steps.len())
        .map(|i| {
            let top = if steps[i].compensates() {
                lane_top
            } else {
                PAD
            };
            (
                PAD + col[i] as i64 * (NODE_W + COL_GAP),
                top + row[i] as i64 * (NODE_H + ROW_GAP),
            )
        })
        .collect();
    let mut edges = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        for (deps, compensation) in [(&s.depends_on, false), (&s.on_failure_of, true)] {
            for d in deps {
                if let Some(&from) = index.get(d.as_str()) {
                    edges.push(Edge {
                        from,
                        to: i,
                        compensation,
                    });
                }
            }
        }
    }
    let bottom = if tallest[1] > 0 {
        lane_top + rows_height(tallest[1])
    } else {
        main_bottom
    };
    Layout {
        pos,
        edges,
        lane_y,
        width: PAD * 2 + columns as i64 * (NODE_W + COL_GAP)
            - COL_GAP.min(columns as i64 * COL_GAP),
        height: bottom + PAD,
    }
}

/// The SVG path of an edge. A dependency is a curve from the right of one
/// box to the left of the next; a compensation edge leaves its step to the
/// right, drops down the gap after that step's column into the lane and
/// runs along it to the compensation: square corners, never across a box
/// of the main path.
pub fn edge_path(l: &Layout, e: Edge) -> String {
    let (x1, y1) = (l.pos[e.from].0 + NODE_W, l.pos[e.from].1 + NODE_H / 2);
    let (x2, y2) = (l.pos[e.to].0, l.pos[e.to].1 + NODE_H / 2);
    if e.compensation {
        let gap = x1 + COL_GAP / 3;
        format!("M{x1},{y1} H{gap} V{y2} H{x2}")
    } else {
        let mid = (x1 + x2) / 2;
        format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, deps: &[&str]) -> DagStep {
        DagStep {
            id: id.into(),
            kind: "task".into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            on_failure_of: vec![],
            fan_out: false,
            conditional: false,
            wait: None,
        }
    }

    #[test]
    fn wait_and_workflow_steps_carry_their_rule() {
        let def = serde_json::json!({ "steps": [
            { "id": "nap", "type": "wait", "duration_ms": 3000 },
            { "id": "paid", "type": "wait", "event": { "key": "order:{{ inputs.order }}", "timeout_ms": 60000, "on_timeout": "continue" } },
            { "id": "ack", "type": "wait", "event": { "key": "ack" } },
            { "id": "sub", "type": "workflow", "workflow": "child", "version": 2 },
            { "id": "t", "type": "task", "task_type": "echo" },
        ]});
        let waits: Vec<Option<WaitDef>> = steps_of(&def).into_iter().map(|s| s.wait).collect();
        assert_eq!(
            waits,
            vec![
                Some(WaitDef::Sleep {
                    duration_ms: Some(3000),
                    until: None
                }),
                Some(WaitDef::Event {
                    key: "order:{{ inputs.order }}".into(),
                    timeout_ms: Some(60000),
                    continues: true
                }),
                Some(WaitDef::Event {
                    key: "ack".into(),
                    timeout_ms: None,
                    continues: false
                }),
                Some(WaitDef::Workflow {
                    name: "child".into(),
                    version: Some(2)
                }),
                None,
            ]
        );
        let summaries: Vec<String> = waits.iter().flatten().map(WaitDef::summary).collect();
        assert_eq!(
            summaries,
            [
                "sleeps 3.0 s",
                "waits for event order:{{ inputs.order }}; after 1 min 0 s it continues",
                "waits for event ack",
                "runs workflow child v2",
            ]
        );
    }

    #[test]
    fn columns_follow_the_longest_dependency_chain() {
        let steps = vec![
            step("a", &[]),
            step("b", &["a"]),
            step("c", &["a", "b"]),
            step("d", &[]),
        ];
        let l = layout(&steps);
        let x: Vec<i64> = l.pos.iter().map(|p| p.0).collect();
        assert!(
            x[0] < x[1] && x[1] < x[2],
            "a, b, c in successive columns: {x:?}"
        );
        assert_eq!(x[3], x[0], "a root sits in the first column");
        assert_eq!(l.edges.len(), 3);
        assert_eq!(l.lane_y, None, "no compensation, no lane");
        assert!(l.width >= 3 * NODE_W && l.height >= 2 * NODE_H);
    }

    #[test]
    fn compensation_steps_sit_in_a_lane_below_the_main_path() {
        let mut refund = step("refund", &[]);
        refund.on_failure_of = vec!["charge".into(), "ship".into()];
        let steps = vec![
            step("reserve", &[]),
            step("charge", &["reserve"]),
            step("audit", &["reserve"]),
            step("ship", &["charge"]),
            refund,
        ];
        let l = layout(&steps);
        let lane = l.lane_y.expect("a lane");
        let main_bottom = l.pos[..4].iter().map(|p| p.1 + NODE_H).max().unwrap();
        assert!(main_bottom < lane && lane < l.pos[4].1, "{l:?}");
        assert!(l.pos[4].1 + NODE_H <= l.height);
        // After the latest step it watches.
        assert!(l.pos[4].0 > l.pos[3].0);
        let comp: Vec<&Edge> = l.edges.iter().filter(|e| e.compensation).collect();
        assert_eq!(comp.len(), 2);
        // Its edges run square: right, down the gap, along the lane.
        let path = edge_path(&l, *comp[0]);
        assert!(
            path.contains(" V") && path.contains(" H") && !path.contains('C'),
            "{path}"
        );
        // The vertical run stays in the gap between columns, clear of every box.
        let gap_x = l.pos[1].0 + NODE_W + COL_GAP / 3;
        assert!(l.pos.iter().all(|p| gap_x < p.0 || gap_x > p.0 + NODE_W));
    }

    #[test]
    fn a_long_chain_stays_one_row_high() {
        let mut steps = vec![step("s0", &[])];
        for i in 1..60 {
            steps.push(step(&format!("s{i}"), &[&format!("s{}", i - 1)]));
        }
        let l = layout(&steps);
        assert!(l.pos.iter().all(|p| p.1 == PAD));
        assert!(l.height < 2 * NODE_H);
    }
}
