//! What a workflow's page reads, over the API, on SQLite and PostgreSQL:
//! the text each version was uploaded as (a rendering for a version stored
//! before texts were kept), the line diff between two versions, and how
//! the workflow's newest finished runs ended.

#[macro_use]
mod support;

use serde_json::{json, Value};
use sqlx::Connection;
use support::{fast_timeouts, Backend, Database, Server};

on_both!(
    a_version_keeps_its_text_as_uploaded_and_viewers_read_it,
    a_diff_shows_the_lines_added_and_removed_between_two_versions,
    bad_diff_parameters_are_named_and_missing_versions_are_404,
    a_version_stored_before_texts_were_kept_shows_a_rendering,
    stats_count_how_the_newest_finished_runs_ended,
);

const V1: &str = "# Greets someone.\nname: greet\ninputs:\n  who: { type: string, required: true }\nsteps:\n  - id: hello\n    type: wait\n    duration_ms: 10   # a short pause\n";
const V2: &str = "# Greets someone, twice.\nname: greet\ninputs:\n  who: { type: string, required: true }\nsteps:\n  - id: hello\n    type: wait\n    duration_ms: 10   # a short pause\n  - id: again\n    type: wait\n    depends_on: [hello]\n    duration_ms: 20\n";

async fn server(backend: Backend) -> (Server, Database) {
    let db = Database::new(backend).await;
    let server = Server::spawn_app(&db, &fast_timeouts()).await;
    (server, db)
}

async fn get_as(server: &Server, token: &str, path: &str) -> (u16, Value) {
    server
        .call_as(token, reqwest::Method::GET, path, None)
        .await
}

async fn a_version_keeps_its_text_as_uploaded_and_viewers_read_it(backend: Backend) {
    let (server, _db) = server(backend).await;
    server.upload_ok(V1).await;
    server.upload_ok(V2).await;
    let viewer = server.create_user("vic", "viewer").await;
    for (version, text) in [(1, V1), (2, V2)] {
        let (s, body) = get_as(
            &server,
            &viewer,
            &format!("/api/v1/workflows/greet/versions/{version}/source"),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["text"], text, "byte for byte, comments and all");
        assert_eq!(body["rendered"], false);
        assert_eq!(body["version"], version);
    }
    // Only a comment changed: the definition is the same, so there is no
    // new version, and v2 keeps the text it was first uploaded as.
    let (s, body) = server
        .upload_workflow(support::API_TOKEN, &V2.replace("twice", "two times"))
        .await;
    assert_eq!((s, &body["created"]), (200, &json!(false)), "{body}");
    let (_, body) = server
        .get("/api/v1/workflows/greet/versions/2/source")
        .await;
    assert_eq!(body["text"], V2);
    // A text PostgreSQL could not keep is refused before it is stored.
    let (s, body) = server
        .upload_workflow(support::API_TOKEN, "name: nul\n# \0\nsteps: []\n")
        .await;
    assert!((400..500).contains(&s), "{s} {body}");
}

async fn a_diff_shows_the_lines_added_and_removed_between_two_versions(backend: Backend) {
    let (server, _db) = server(backend).await;
    server.upload_ok(V1).await;
    server.upload_ok(V2).await;
    let viewer = server.create_user("vic", "viewer").await;
    let (s, d) = get_as(&server, &viewer, "/api/v1/workflows/greet/diff?from=1&to=2").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!((d["from"].as_i64(), d["to"].as_i64()), (Some(1), Some(2)));
    assert_eq!(d["rendered"], false);
    assert_eq!(
        (d["added"].as_i64(), d["removed"].as_i64()),
        (Some(5), Some(1)),
        "{d}"
    );
    let lines: Vec<&Value> = d["hunks"]
        .as_array()
        .expect("hunks")
        .iter()
        .flat_map(|h| h["lines"].as_array().expect("lines"))
        .collect();
    let changed = |kind: &str| -> Vec<(Option<i64>, Option<i64>, String)> {
        lines
            .iter()
            .filter(|l| l["change"] == kind)
            .map(|l| {
                (
                    l["from_line"].as_i64(),
                    l["to_line"].as_i64(),
                    l["text"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        changed("removed"),
        [(Some(1), None, "# Greets someone.".to_string())]
    );
    let added = changed("added");
    assert_eq!(added[0], (None, Some(1), "# Greets someone, twice.".into()));
    assert_eq!(added[1], (None, Some(9), "  - id: again".into()));
    assert_eq!(added.len(), 5);
    // Backwards, the same lines swap sides; a version against itself is empty.
    let (_, back) = server.get("/api/v1/workflows/greet/diff?from=2&to=1").await;
    assert_eq!(
        (back["added"].as_i64(), back["removed"].as_i64()),
        (Some(1), Some(5))
    );
    let (_, same) = server.get("/api/v1/workflows/greet/diff?from=2&to=2").await;
    assert_eq!(same["hunks"], json!([]), "{same}");
}

async fn bad_diff_parameters_are_named_and_missing_versions_are_404(backend: Backend) {
    let (server, _db) = server(backend).await;
    server.upload_ok(V1).await;
    for (query, field) in [
        ("from=x&to=1", "from"),
        ("from=1&to=1.5", "to"),
        ("to=1", "from"),
        ("from=1", "to"),
        ("from=0&to=1", "from"),
        ("from=1&to=-2", "to"),
    ] {
        let (s, body) = server
            .get(&format!("/api/v1/workflows/greet/diff?{query}"))
            .await;
        assert!((400..500).contains(&s) && s != 404, "{query}: {s} {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (s, body) = server.get("/api/v1/workflows/greet/diff?from=1&to=9").await;
    assert_eq!(s, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("version 9")),
        "{body}"
    );
    for path in [
        "/api/v1/workflows/greet/versions/9/source",
        "/api/v1/workflows/nope/versions/1/source",
        "/api/v1/workflows/nope/diff?from=1&to=1",
        "/api/v1/workflows/nope/stats",
    ] {
        let (s, body) = server.get(path).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    let (s, body) = server.get("/api/v1/workflows/greet/stats?last=0").await;
    assert_eq!(
        (s, &body["error"]["field"]),
        (422, &json!("last")),
        "{body}"
    );
}

/// Forgets the texts, as a database migrated from before they were kept.
async fn forget_texts(db: &Database) {
    const FORGET: &str = "UPDATE workflows SET source = NULL";
    match db.backend {
        Backend::Postgres => {
            sqlx::query(FORGET)
                .execute(&mut db.pg().await)
                .await
                .expect("forget texts");
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("open the test database");
            sqlx::query(FORGET)
                .execute(&mut c)
                .await
                .expect("forget texts");
        }
    }
}

async fn a_version_stored_before_texts_were_kept_shows_a_rendering(backend: Backend) {
    let (server, db) = server(backend).await;
    server.upload_ok(V1).await;
    forget_texts(&db).await;
    server.upload_ok(V2).await;
    let (s, old) = server
        .get("/api/v1/workflows/greet/versions/1/source")
        .await;
    assert_eq!(s, 200, "{old}");
    assert_eq!(old["rendered"], true);
    let text = old["text"].as_str().expect("text");
    assert!(text.starts_with("name: greet\n"), "{text}");
    assert!(!text.contains('#'), "a rendering has no comments: {text}");
    assert!(text.contains("duration_ms: 10"), "{text}");
    // Compared with a version that has its text, both are rendered, so
    // only the step that changed shows.
    let (s, d) = server.get("/api/v1/workflows/greet/diff?from=1&to=2").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["rendered"], true);
    assert_eq!(d["removed"], 0, "{d}");
    let added: Vec<&str> = d["hunks"][0]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["change"] == "added")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(
        added
            .iter()
            .any(|l| l.trim_start_matches(['-', ' ']) == "id: again"),
        "{added:?}"
    );
}

const TALLY: &str = r#"
name: tally
inputs:
  mode: { type: enum, values: [ok, fail, hold], required: true }
steps:
  - id: nap
    type: wait
    duration_ms: 10
    when: "inputs.mode == 'ok'"
  - id: ack
    type: wait
    event: { key: "tally-fail", timeout_ms: 200 }
    when: "inputs.mode == 'fail'"
  - id: hold
    type: wait
    event: { key: "tally-hold" }
    when: "inputs.mode == 'hold'"
"#;

async fn stats_count_how_the_newest_finished_runs_ended(backend: Backend) {
    let (server, _db) = server(backend).await;
    server.upload_ok(TALLY).await;
    let (_, empty) = server.get("/api/v1/workflows/tally/stats").await;
    assert_eq!(
        (&empty["finished"], &empty["last"], &empty["active"]),
        (&json!(0), &json!(20), &json!(0)),
        "{empty}"
    );
    let mut runs = Vec::new();
    for mode in ["ok", "ok", "fail", "ok", "hold", "hold"] {
        runs.push(server.start_run("tally", json!({ "mode": mode })).await);
    }
    for (id, status) in [
        (runs[0], "succeeded"),
        (runs[1], "succeeded"),
        (runs[2], "failed"),
        (runs[3], "succeeded"),
    ] {
        server.wait_run(id, status).await;
    }
    let (s, cancelled) = server
        .post(&format!("/api/v1/runs/{}/cancel", runs[4]), &json!({}))
        .await;
    assert_eq!(s, 200, "{cancelled}");
    server.wait_run(runs[4], "cancelled").await;

    let viewer = server.create_user("vic", "viewer").await;
    let (s, all) = get_as(&server, &viewer, "/api/v1/workflows/tally/stats").await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(
        all,
        json!({ "name": "tally", "last": 20, "finished": 5, "succeeded": 3, "failed": 1, "cancelled": 1, "active": 1 })
    );
    // The newest two finished runs: the cancelled one and the last success.
    let (_, newest) = server.get("/api/v1/workflows/tally/stats?last=2").await;
    assert_eq!(
        (
            &newest["finished"],
            &newest["succeeded"],
            &newest["failed"],
            &newest["cancelled"]
        ),
        (&json!(2), &json!(1), &json!(0), &json!(1)),
        "{newest}"
    );
    let (_, three) = server.get("/api/v1/workflows/tally/stats?last=3").await;
    assert_eq!(
        (&three["succeeded"], &three["failed"], &three["cancelled"]),
        (&json!(1), &json!(1), &json!(1)),
        "{three}"
    );
}
