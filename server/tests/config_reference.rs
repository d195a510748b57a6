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

/// The server's config file: format, keys, precedence, and the example
/// file itself (which a unit test of `config/file.rs` loads).
fn config_file_section(command: &clap::Command) -> String {
    let lists = command
        .get_arguments()
        .filter(|a| matches!(a.get_action(), clap::ArgAction::Append))
        .filter_map(|a| a.get_long())
        .map(|long| format!("`{}`", long.replace('-', "_")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "## The drover-server config file\n\n\
         `drover-server --config FILE` (or `DROVER_CONFIG=FILE`) reads settings \
         from a TOML file. Its keys are the long flags above without their \
         dashes, in snake_case or kebab-case (`database_url` or \
         `database-url`). Values are TOML strings, numbers or booleans; \
         durations are strings (`\"30s\"`, `\"7days\"`); the settings that take \
         several values ({lists}) take an array, or the comma-separated string \
         their flag takes.\n\n\
         **Precedence:** a flag beats its environment variable, which beats the \
         file, which beats the built-in default. A value from the file yields \
         to the other half of its pair given by flag or variable \
         (`api_token_file` in the file, `DROVER_API_TOKEN` set: the variable's \
         token).\n\n\
         Every value goes through the setting's own parser, as its flag \
         would: a bad value, an unknown key (the closest setting is \
         suggested), a key that is no setting (`help`, `config`, a command), a \
         value of the wrong type or both halves of a pair stop the server at \
         start, exit status 2, naming the file and the key. The `*_file` \
         settings work from the file too: keep secrets in files of their own. \
         A file that holds `api_token`, `enrollment_token`, `metrics_token`, \
         `admin_password` or a `database_url` other than SQLite's should be \
         readable by the server's user alone; the server logs a warning at \
         start when its group or others may read it. Subcommands \
         (`drover-server --config FILE backup --to COPY`) take the file's \
         settings too.\n\n\
         `examples/server.toml`:\n\n```toml\n{}```\n",
        include_str!("../../examples/server.toml"),
    )
}

fn rendered() -> String {
    let server = drover_server::Config::command();
    format!(
        "# Configuration reference\n\n\
         Every setting of `drover-server` and `drover-agent`: a flag, or its \
         environment variable; the server's also a key of its config file \
         (below the server's table). Generated from the code \
         (`server/tests/config_reference.rs` fails when this file is out of \
         date; `DROVER_WRITE_DOCS=1 cargo test -p drover-server --test \
         config_reference` writes it). The README explains them by topic.\n\n{}\n{}\n{}",
        table("drover-server", &server),
        config_file_section(&server),
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
        "`DROVER_CONFIG`",
        "`trusted_proxies`",
    ] {
        assert!(now.contains(needle), "{needle} missing");
    }
}
