//! The systemd units in `deploy/systemd` are valid for this systemd
//! (`systemd-analyze verify`, with the units' binaries pointed at the ones
//! just built), and hardened: `systemd-analyze security` rates the server's
//! exposure at most 2.0 and the agent's at most 4.0 (of 10; the agent runs
//! operators' handlers, which need more of the host).

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/systemd");

fn systemd_analyze(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze is required to check deploy/systemd: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The units with `/usr/bin/<binary>` replaced by the built binary.
fn units_here(scratch: &Path) -> Vec<&'static str> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_drover-server"));
    let bin_dir = built.parent().expect("target dir");
    let mut names = Vec::new();
    for name in ["drover-server", "drover-agent"] {
        let text = std::fs::read_to_string(format!("{UNITS}/{name}.service")).expect("unit");
        let binary = bin_dir.join(name);
        assert!(
            binary.exists(),
            "{} is missing: build the binaries first",
            binary.display()
        );
        let text = text.replace(&format!("/usr/bin/{name}"), &binary.display().to_string());
        std::fs::write(scratch.join(format!("{name}.service")), text).expect("write unit");
        names.push(name);
    }
    names
}

fn exposure(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.split("exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"))
}

#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let scratch = tempfile::tempdir().expect("scratch");
    let names = units_here(scratch.path());
    let files: Vec<String> = names.iter().map(|n| format!("./{n}.service")).collect();
    let mut args = vec!["verify"];
    args.extend(files.iter().map(String::as_str));
    let (ok, text) = systemd_analyze(&args, scratch.path());
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
    for (name, most) in [("drover-server", 2.0), ("drover-agent", 4.0)] {
        let unit = format!("./{name}.service");
        let (_, text) = systemd_analyze(&["security", "--offline=yes", &unit], scratch.path());
        let level = exposure(&text);
        assert!(level <= most, "{name}: exposure {level} > {most}\n{text}");
    }
}
