//! schemathesis (property-based API fuzzing from PyPI) against a live
//! server on each database, driven by the server's own OpenAPI description:
//! no answer is a 5xx, none breaks the described schema, status code or
//! content type. A bounded run (`DROVER_SCHEMATHESIS_EXAMPLES`, default
//! 10 per operation, fixed seed); README, "OpenAPI", gives the longer one.
//!
//! The operations that take the caller's own credentials away (changing a
//! user, a password, revoking tokens, signing out) run in a second pass, so
//! they cannot lock the first one out early.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Backend, Database, Server, API_TOKEN};

/// The operations of the second pass.
const LOCKING_OUT: [&str; 5] = [
    "updateUser",
    "changePassword",
    "revokeToken",
    "signOut",
    "revokeEnrollmentToken",
];

fn schemathesis() -> String {
    std::env::var("DROVER_SCHEMATHESIS").unwrap_or_else(|_| {
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.tools/schemathesis-venv/bin/schemathesis"
        );
        assert!(
            std::path::Path::new(venv).exists(),
            "schemathesis is missing: run scripts/test.sh (it installs it), or set DROVER_SCHEMATHESIS"
        );
        venv.to_string()
    })
}

fn run(server: &Server, dir: &Path, operations: &[&str], include: bool) -> (bool, String) {
    let examples =
        std::env::var("DROVER_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".to_string());
    let mut cmd = Command::new(schemathesis());
    // It keeps a cache in its working directory.
    cmd.current_dir(dir)
        .arg("run")
        .arg(format!("{}/api/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {API_TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // The event stream never ends.
        .args(["--exclude-operation-id", "events"])
        .args(["--max-examples", &examples])
        .args(["--seed", "20261207"])
        .args(["--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "");
    for op in operations {
        let flag = if include {
            "--include-operation-id"
        } else {
            "--exclude-operation-id"
        };
        cmd.args([flag, op]);
    }
    let out = cmd.output().expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn fuzz(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(
        &db,
        &[
            ("DROVER_TASK_TYPES", "echo"),
            ("DROVER_ADMIN_PASSWORD", "schemathesis-admin-password"),
        ],
    )
    .await;
    for (operations, include) in [(&LOCKING_OUT[..], false), (&LOCKING_OUT[..], true)] {
        let (ok, text) = run(&server, db.dir(), operations, include);
        assert!(
            ok,
            "schemathesis found answers that break the description:\n{text}\nserver log:\n{}",
            server.log_text()
        );
        assert!(
            text.contains("Tested:"),
            "schemathesis tested nothing:\n{text}"
        );
    }
}

#[tokio::test]
async fn sqlite_answers_match_the_description() {
    fuzz(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_answers_match_the_description() {
    fuzz(Backend::Postgres).await;
}
