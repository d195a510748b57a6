//! `docs/CONFIGURATION.md`, every setting of the server and the agent
//! (flag, environment variable, default, meaning), is rendered from their
//! `clap` definitions, so it cannot drift: this test fails when the file
//! differs from what the code says. `DROVER_WRITE_DOCS=1 cargo test -p
//! drover-server --test config_reference` writes it afresh.

use clap::CommandFactory;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIGURATION.md");

fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn table(title: &str, command: &clap::Command) -> String {
    let mut out =
        format!("## {title}\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| cell(&h.to_string()))
            .unwrap_or_default();
        out.push_str(&format!("| `--{long}` | {env} | {default} | {help} |\n"));
    }
    out
}

fn rendered() -> String {
    format!(
        "# Configuration reference\n\n\
         Every setting of `drover-server` and `drover-agent`: a flag, or its \
         environment variable. Generated from the code \
         (`server/tests/config_reference.rs` fails when this file is out of \
         date; `DROVER_WRITE_DOCS=1 cargo test -p drover-server --test \
         config_reference` writes it). The README explains them by topic.\n\n{}\n{}",
        table("drover-server", &drover_server::Config::command()),
        table("drover-agent", &drover_agent::cli::Cli::command()),
    )
}

#[test]
fn the_configuration_reference_is_what_the_code_says() {
    let now = rendered();
    if std::env::var_os("DROVER_WRITE_DOCS").is_some() {
        std::fs::write(DOC, &now).expect("write docs/CONFIGURATION.md");
    }
    let written = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        written == now,
        "docs/CONFIGURATION.md is out of date: run \
         `DROVER_WRITE_DOCS=1 cargo test -p drover-server --test config_reference`"
    );
    // Every setting is there, with its variable.
    for needle in [
        "`--listen`",
        "`DROVER_RETENTION`",
        "`--api-token-file`",
        "`DROVER_TOKEN_FILE`",
    ] {
        assert!(now.contains(needle), "{needle} missing");
    }
}
