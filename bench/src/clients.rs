//! The many-small-clients mode: services that each submit one task per
//! request, as most users do, rather than the big batches of the queue mode.
//!
//! First one client submits tasks one after another (the latency a lone
//! caller sees), then `clients` concurrent clients, each on its own kept-alive
//! connection, submit one task per request until `tasks` have been sent.
//! Every request's round trip is recorded; the figures are the submits per
//! second of the concurrent phase and the round trips' percentiles.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

/// One phase's round trips, sorted, in milliseconds.
pub struct Phase {
    pub clients: usize,
    pub requests: usize,
    pub elapsed: Duration,
    pub round_trips_ms: Vec<f64>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn pct(&self, p: f64) -> f64 {
        let v = &self.round_trips_ms;
        if v.is_empty() {
            return 0.0;
        }
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// What the mode measured on one database.
pub struct Report {
    pub backend: &'static str,
    pub single: Phase,
    pub concurrent: Phase,
}

/// Runs both phases against the server at `url`.
pub async fn measure(
    backend: &'static str,
    url: &str,
    token: &str,
    clients: usize,
    tasks: usize,
    samples: usize,
) -> Result<Report> {
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    let single = phase(url, token, 1, samples).await?;
    let concurrent = phase(url, token, clients, tasks).await?;
    Ok(Report {
        backend,
        single,
        concurrent,
    })
}

/// `requests` single-task submits from `clients` concurrent clients.
async fn phase(url: &str, token: &str, clients: usize, requests: usize) -> Result<Phase> {
    // One connection per client, kept alive, as a pooled HTTP client in a
    // service would hold it.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(clients);
    for c in 0..clients {
        let (http, next) = (http.clone(), Arc::clone(&next));
        let (url, token) = (format!("{url}/api/v1/tasks"), token.to_string());
        workers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let sent = Instant::now();
                let status = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"task_type": "echo", "payload": {"client": c, "i": i}}))
                    .send()
                    .await
                    .context("submit")?
                    .status();
                if status.as_u16() != 201 {
                    bail!("a single submit was answered {status}");
                }
                times.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(times)
        }));
    }
    let mut round_trips_ms = Vec::with_capacity(requests);
    for w in workers {
        round_trips_ms.extend(w.await??);
    }
    let elapsed = started.elapsed();
    round_trips_ms.sort_by(f64::total_cmp);
    Ok(Phase {
        clients,
        requests,
        elapsed,
        round_trips_ms,
    })
}

/// The table of every run's figures, then (with several runs of a
/// database) their medians.
pub fn print(reports: &[(String, Report)]) {
    print_runs(reports);
    let groups = crate::by_label(reports);
    if groups.len() == reports.len() {
        return;
    }
    println!();
    println!("| database | runs | clients | submits/s (median) | round trip p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for (label, runs) in groups {
        for concurrent in [false, true] {
            let phases: Vec<&Phase> = runs
                .iter()
                .map(|r| if concurrent { &r.concurrent } else { &r.single })
                .collect();
            println!(
                "| {label} | {} | {} | {:.0} | {:.2} ms | {:.2} ms |",
                runs.len(),
                phases[0].clients,
                median(phases.iter().map(|p| p.rate()).collect()),
                median(phases.iter().map(|p| p.pct(0.5)).collect()),
                median(phases.iter().map(|p| p.pct(0.99)).collect())
            );
        }
    }
}

fn median(values: Vec<f64>) -> f64 {
    crate::median(values).unwrap_or(0.0)
}

fn print_runs(reports: &[(String, Report)]) {
    println!();
    println!("| database | clients | submits | submits/s | round trip p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (label, r) in reports {
        for p in [&r.single, &r.concurrent] {
            println!(
                "| {label} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
                p.clients,
                p.requests,
                p.rate(),
                p.pct(0.5),
                p.pct(0.99),
                p.pct(1.0)
            );
        }
    }
}
