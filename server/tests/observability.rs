//! What operators watch. Logs for a log shipper: with `DROVER_LOG_JSON` a
//! real server process writes one JSON object per line, each with its level
//! and message, and a request's lines carry the request's span. Metrics:
//! every metric the Grafana dashboard and the alert rules in `deploy/` name
//! is in a real server's `/metrics` once it has done some work.

#[macro_use]
mod support;

use std::time::Duration;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::{eventually, new_task, Backend, Database, RawAgent, Server};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_requests_span() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(
        &db,
        &[
            ("DROVER_LOG_JSON", "1"),
            ("RUST_LOG", "info,tower_http=debug"),
        ],
    )
    .await;
    assert_eq!(server.get("/api/v1/stats").await.0, 200);
    let lines: Vec<Value> = eventually(Duration::from_secs(5), "a request's log line", || async {
        let text = server.log_text();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            // The first start's admin password is told to the person at the
            // terminal, never logged (a shipper would keep it).
            .filter(|l| !l.starts_with("drover-server: created user"))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        lines
            .iter()
            .any(|l| l["span"]["uri"] == "/api/v1/stats")
            .then_some(lines)
    })
    .await;
    for line in &lines {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "database ready, migrations applied"));
}

/// The `drover_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("drover_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every expression of the dashboard's panels and of the alert rules.
fn deployed_expressions() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/grafana/drover.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a target's expr").to_string())
        .collect();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/prometheus/drover-alerts.yml")).expect("rules"),
    )
    .expect("the alert rules are YAML");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            assert!(rule["alert"].as_str().is_some(), "a rule without a name");
            exprs.push(rule["expr"].as_str().expect("a rule's expr").to_string());
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let exprs = deployed_expressions();
    assert!(exprs.len() >= 15, "{exprs:?}");
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::start(&db, &[("DROVER_TASK_TYPES", "echo")]).await;
    let agent = RawAgent::register(&server, "a", 4, &["echo"]).await;
    server
        .submit(vec![
            new_task("echo", json!({})),
            new_task("echo", json!({})),
        ])
        .await;
    let claimed = agent.claim(2, 2_000).await;
    let now = drover_engine::time::now_us();
    let results = json!({ "results": [
        { "task_id": claimed[0].0, "lease_token": claimed[0].1, "started_at_us": now - 5_000,
          "finished_at_us": now, "outcome": { "status": "succeeded", "output": {} } },
        { "task_id": claimed[1].0, "lease_token": claimed[1].1,
          "outcome": { "status": "failed", "error": "boom", "retryable": false } } ] });
    assert_eq!(agent.post("results", results).await.0, 200);
    server.submit(vec![new_task("echo", json!({}))]).await;

    let exported: BTreeSet<String> =
        eventually(Duration::from_secs(15), "the queue gauges", || async {
            let text = server.metrics_text().await?;
            let names: BTreeSet<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .map(str::to_string)
                .collect();
            (names.contains("drover_queue_depth") && names.contains("drover_tasks"))
                .then_some(names)
        })
        .await;
    let mut missing = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "an expression naming no drover metric: {expr}"
        );
        missing.extend(names.into_iter().filter(|n| !exported.contains(n)));
    }
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:?}\nexported: {exported:?}"
    );
}
