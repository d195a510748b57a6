//! The databases' own queue ceilings, measured in the same invocation as
//! Drover's figures so that the benchmark can print ratios that hold from
//! run to run: `sqlite_limit.py` and `pg_limit.sh` (insert → claim →
//! complete by the database alone, no HTTP, no server) from the directory
//! given with `--ceilings`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The batch-100 ceiling of each database, in tasks per second.
pub type Ceilings = BTreeMap<&'static str, f64>;

/// Runs the reference scripts for `backends` and reads their batch-100
/// figure (`... batch=100: 183,288 tasks/s`).
pub fn measure(dir: &Path, backends: &[&'static str]) -> Result<Ceilings> {
    let mut ceilings = Ceilings::new();
    for &backend in backends {
        let mut command = match backend {
            "sqlite" => {
                let mut c = Command::new("python3");
                c.arg(dir.join("sqlite_limit.py")).arg("NORMAL");
                c
            }
            _ => {
                // It reaches PostgreSQL on 127.0.0.1:5432 as `postgres`.
                let mut c = Command::new("bash");
                c.arg(dir.join("pg_limit.sh"));
                c
            }
        };
        println!("measuring the {backend} ceiling with {}", dir.display());
        let out = command
            .output()
            .with_context(|| format!("run the {backend} ceiling script in {}", dir.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "the {backend} ceiling script failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        print!("{text}");
        let figure = text
            .lines()
            .find(|l| l.contains("batch=100:"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .map(|v| v.replace(',', ""))
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no `batch=100: N tasks/s` line from the {backend} script"))?;
        ceilings.insert(backend, figure);
    }
    Ok(ceilings)
}
