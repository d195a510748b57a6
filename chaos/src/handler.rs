//! `drover-chaos handler`: the `command` handler the suite's agents run.
//!
//! It appends `task_id attempt agent agent_pid pid start|end time_us` to the
//! side-effect log before and after sleeping for the payload's `ms`: the
//! ground truth of what ran, kept apart from the database under test. Each
//! line is one `write` on a file opened with `O_APPEND`, so lines from
//! concurrent handlers never interleave.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::now_us;

/// Runs one task: log `start`, sleep, log `end`, print `{}` as the output.
pub fn run(log: &Path, agent: &str) -> Result<()> {
    let task = std::env::var("DROVER_TASK_ID").context("DROVER_TASK_ID is not set")?;
    let attempt = std::env::var("DROVER_ATTEMPT").context("DROVER_ATTEMPT is not set")?;
    let mut payload = String::new();
    std::io::stdin()
        .read_to_string(&mut payload)
        .context("read the payload")?;
    let ms = serde_json::from_str::<serde_json::Value>(&payload)
        .ok()
        .and_then(|v| v["ms"].as_u64())
        .unwrap_or(0);
    // The agent that started us: the parent at start (an orphan's parent
    // changes once its agent dies, so `end` repeats the one `start` saw).
    let agent_pid = std::os::unix::process::parent_id();
    let pid = std::process::id();
    append(
        log,
        &format!(
            "{task} {attempt} {agent} {agent_pid} {pid} start {}\n",
            now_us()
        ),
    )?;
    std::thread::sleep(Duration::from_millis(ms));
    append(
        log,
        &format!(
            "{task} {attempt} {agent} {agent_pid} {pid} end {}\n",
            now_us()
        ),
    )?;
    println!("{{}}");
    Ok(())
}

fn append(log: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("append to {}", log.display()))
}
