//! The fault suite's short form, on SQLite and PostgreSQL, as part of the
//! normal test run: 1,000 tasks and 20 workflow runs per database through
//! real `drover-server` and `drover-agent` processes (built beside this
//! test's binary by `cargo build --workspace --bins`) while agents are
//! killed, stopped and cut off, the server or leader is killed, PostgreSQL
//! restarts and SQLite's disk fills. It fails when anything is lost,
//! unexpected, completed twice without a fault to explain it, or too slow
//! to recover (docs/RELIABILITY.md).

use std::process::Command;

#[test]
fn short_fault_suite_passes_on_both_databases() {
    let chaos = env!("CARGO_BIN_EXE_drover-chaos");
    let out = Command::new(chaos)
        .args(["--short", "--backend", "both"])
        .output()
        .expect("run drover-chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "drover-chaos --short failed ({}): see the ✗ rows above",
        out.status
    );
    assert!(stdout.contains("| sqlite |") && stdout.contains("| postgres |"));
}
