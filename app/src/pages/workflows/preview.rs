//! A version's graph before any run: the run page's layout (`crate::dag`),
//! every step drawn as not run yet, nothing to click. The run page's
//! graph is tied to a run's state; this one needs only the definition.

use leptos::prelude::*;
use serde_json::Value;

use crate::dag::{edge_path, layout, steps_of, DagStep, NODE_H, NODE_W, PAD};

/// What a node's second line says about the step.
fn kind_of(s: &DagStep) -> String {
    match (&s.wait, s.kind.as_str()) {
        (Some(w), _) => w.label().to_string(),
        (None, "approval") => "approval".to_string(),
        _ if s.fan_out => "for each".to_string(),
        _ if s.conditional => "task · when".to_string(),
        _ => "task".to_string(),
    }
}

#[component]
pub fn GraphPreview(definition: Value) -> impl IntoView {
    let dag = steps_of(&definition);
    let l = layout(&dag);
    let edges = l
        .edges
        .iter()
        .map(|&e| {
            view! { <path d=edge_path(&l, e) class:comp=e.compensation marker-end="url(#preview-arrow)"></path> }
        })
        .collect_view();
    // Compensation steps sit in their own lane, as on the run page.
    let lane = l.lane_y.map(|y| {
        view! {
            <g class="comp-lane">
                <line class="lane-rule" x1="0" y1=y x2=l.width y2=y></line>
                <text class="lane-name" x=l.width - PAD y=y + 16 text-anchor="end">"compensation"</text>
            </g>
        }
    });
    let nodes = dag
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (x, y) = l.pos[i];
            let label: String = if s.id.chars().count() > 20 {
                s.id.chars().take(19).chain(['…']).collect()
            } else {
                s.id.clone()
            };
            let kind = kind_of(s);
            let after = if s.depends_on.is_empty() {
                String::new()
            } else {
                format!(" · after {}", s.depends_on.join(", "))
            };
            view! {
                <g class="node" transform=format!("translate({x},{y})") data-testid=format!("preview-step-{}", s.id)>
                    <title>{s.id.clone()} " · " {kind.clone()} {after}</title>
                    <rect width=NODE_W height=NODE_H rx="6"></rect>
                    {s.fan_out.then(|| view! { <rect class="stack" x="4" y="-4" width=NODE_W height=NODE_H rx="6"></rect> })}
                    <text x="10" y="17" class="node-id">{label}</text>
                    <text x="10" y="32" class="node-sub">{kind}</text>
                </g>
            }
        })
        .collect_view();
    let described = format!(
        "Graph of the {} steps, before any run: each step after the steps it depends on",
        dag.len()
    );
    view! {
        // Focusable, so a keyboard can scroll a graph wider than the page.
        <div class="graph-wrap preview" tabindex="0" role="region" aria-label="Graph preview" data-testid="graph-preview">
            <svg class="dag preview" width=l.width height=l.height viewBox=format!("0 0 {} {}", l.width, l.height) role="img" aria-label=described>
                <defs>
                    <marker id="preview-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M 0 0 L 10 5 L 0 10 z"></path>
                    </marker>
                </defs>
                {lane}
                <g class="edges">{edges}</g>
                {nodes}
            </svg>
        </div>
    }
}
