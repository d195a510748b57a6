//! The work pushed through the system while faults happen: N tasks in
//! paced batches and M runs of a small workflow, each submission retried
//! (with an idempotency key, so a retry never makes a second task) until a
//! server accepts it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::Rng;
use serde_json::{json, Value};

use crate::procs::API_TOKEN;

/// The workflow every run uses: one step, a fan-out of three, one step.
pub const WORKFLOW: &str = r#"name: chaos-flow
description: drover-chaos's run shape
defaults: { max_attempts: 20, retry_backoff_ms: 0 }
steps:
  - id: first
    type: task
    task_type: chaos
    payload: { ms: 30 }
  - id: fan
    type: task
    depends_on: [first]
    task_type: chaos
    for_each: "[1, 2, 3]"
    payload: { ms: 60, n: "{{ item }}" }
  - id: last
    type: task
    depends_on: [fan]
    task_type: chaos
    payload: { ms: 30 }
"#;

/// Tasks in a run of [`WORKFLOW`].
pub const TASKS_PER_RUN: usize = 5;

/// What was acknowledged: the ids the servers answered with.
#[derive(Debug, Default)]
pub struct Submitted {
    pub task_ids: Vec<i64>,
    pub run_ids: Vec<i64>,
    /// Submissions never accepted after retrying for a minute.
    pub given_up: usize,
    /// Failed tries that a retry then got through.
    pub retried: usize,
}

pub type Shared = Arc<Mutex<Submitted>>;

/// Talks to whichever servers are live.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub live: Arc<Mutex<Vec<String>>>,
    pub submitted: Shared,
}

impl Client {
    /// POSTs until a server answers 2xx (→ the body) or refuses for good (4xx).
    pub async fn post(&self, path: &str, body: &Value, within: Duration) -> Result<Value> {
        let deadline = Instant::now() + within;
        let mut tries = 0usize;
        loop {
            let urls = self.live.lock().map(|l| l.clone()).unwrap_or_default();
            if !urls.is_empty() {
                let url = &urls[tries % urls.len()];
                match self.once(url, path, body).await {
                    Ok((status, v)) if (200..300).contains(&status) => {
                        if tries > 0 {
                            if let Ok(mut s) = self.submitted.lock() {
                                s.retried += 1;
                            }
                        }
                        return Ok(v);
                    }
                    Ok((status, v)) if (400..500).contains(&status) && status != 429 => {
                        bail!("{path}: {status} {v}")
                    }
                    _ => {}
                }
            }
            tries += 1;
            if Instant::now() > deadline {
                bail!("{path}: no server accepted it within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One POST to one server: status and JSON body.
    pub async fn once(&self, url: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{url}{path}"))
            .bearer_auth(API_TOKEN)
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Uploads [`WORKFLOW`].
    pub async fn upload_workflow(&self) -> Result<()> {
        let urls = self.live.lock().map(|l| l.clone()).unwrap_or_default();
        let url = urls.first().cloned().unwrap_or_default();
        let r = self
            .http
            .post(format!("{url}/api/v1/workflows"))
            .bearer_auth(API_TOKEN)
            .body(WORKFLOW)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "workflow upload: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub fn record_tasks(&self, body: &Value) {
        let ids = body["tasks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["id"].as_i64())
                    .collect::<Vec<_>>()
            })
            .or_else(|| body["id"].as_i64().map(|id| vec![id]))
            .unwrap_or_default();
        if let Ok(mut s) = self.submitted.lock() {
            s.task_ids.extend(ids);
        }
    }

    /// Submits one task with `key`; records its id when accepted.
    pub async fn submit_one(&self, key: &str, ms: u64) -> Result<()> {
        let body = self
            .post("/api/v1/tasks", &task(key, ms), Duration::from_secs(60))
            .await?;
        self.record_tasks(&body);
        Ok(())
    }
}

pub fn task(key: &str, ms: u64) -> Value {
    json!({
        "task_type": "chaos",
        "payload": { "ms": ms },
        "idempotency_key": key,
        "max_attempts": 20,
        "retry_backoff_ms": 0,
    })
}

/// A handler's sleep: mostly a few ms, some up to a second.
fn sleep_ms(rng: &mut impl Rng) -> u64 {
    match rng.random_range(0..100) {
        0..75 => rng.random_range(1..40),
        75..95 => rng.random_range(40..300),
        _ => rng.random_range(300..1000),
    }
}

/// Submits `tasks` tasks in batches of `batch` and starts `runs` runs,
/// spread evenly over `spread`.
pub async fn run(
    client: &Client,
    tasks: usize,
    runs: usize,
    batch: usize,
    spread: Duration,
) -> Result<()> {
    client.upload_workflow().await?;
    let batches = tasks.div_ceil(batch).max(1);
    let pause = spread / batches as u32;
    let began = Instant::now();
    let mut next_task = 0usize;
    let mut next_run = 0usize;
    for b in 0..batches {
        let n = batch.min(tasks - next_task);
        let list: Vec<Value> = {
            let mut rng = rand::rng();
            (next_task..next_task + n)
                .map(|i| task(&format!("chaos-t-{i}"), sleep_ms(&mut rng)))
                .collect()
        };
        next_task += n;
        let batch_body = json!({ "tasks": list });
        match client
            .post("/api/v1/tasks", &batch_body, Duration::from_secs(60))
            .await
        {
            Ok(body) => client.record_tasks(&body),
            Err(e) => {
                eprintln!("  submit batch {b} given up: {e:#}");
                if let Ok(mut s) = client.submitted.lock() {
                    s.given_up += 1;
                }
            }
        }
        let runs_due = (runs * (b + 1)) / batches;
        while next_run < runs_due {
            let body = json!({
                "workflow": "chaos-flow",
                "inputs": {},
                "idempotency_key": format!("chaos-r-{next_run}"),
            });
            match client
                .post("/api/v1/runs", &body, Duration::from_secs(60))
                .await
            {
                Ok(v) => {
                    if let (Some(id), Ok(mut s)) = (
                        v["id"].as_i64().or_else(|| v["run"]["id"].as_i64()),
                        client.submitted.lock(),
                    ) {
                        s.run_ids.push(id);
                    }
                }
                Err(e) => {
                    eprintln!("  run {next_run} given up: {e:#}");
                    if let Ok(mut s) = client.submitted.lock() {
                        s.given_up += 1;
                    }
                }
            }
            next_run += 1;
        }
        let due = pause * (b as u32 + 1);
        if let Some(wait) = due.checked_sub(began.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    Ok(())
}
