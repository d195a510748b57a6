//! The OpenAPI description is complete and sound: every route the routers
//! in `server/src/http` mount is described, with the same methods, and
//! nothing else is; every schema it refers to is in it; a live server
//! serves it and its rendered reference page. (schemathesis checks live
//! answers against it: `server/tests/schemathesis.rs`.)

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Backend, Database, Server};

const HTTP_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Routes mounted at the root rather than under `/api/v1`.
fn full_path(path: &str) -> String {
    let at_root = [
        "/healthz", "/readyz", "/metrics", "/signin", "/signout", "/api/",
    ];
    if at_root.iter().any(|p| path.starts_with(p)) {
        path.to_string()
    } else {
        format!("/api/v1{path}")
    }
}

/// `(METHOD, path)` of every `.route("path", get(..).post(..))` in `text`:
/// the method calls directly inside the route call (not inside handlers'
/// bodies), strings skipped.
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find(".route(") {
        let open = from + at + ".route(".len();
        from = open;
        let Some(q1) = text[open..].find('"').map(|i| open + i) else {
            break;
        };
        if !text[open..q1].trim().is_empty() {
            continue;
        }
        let q2 = q1 + 1 + text[q1 + 1..].find('"').expect("closing quote");
        let path = &text[q1 + 1..q2];
        // Walk to the route call's closing parenthesis, noting identifiers
        // called at depth 1.
        let mut depth = 1;
        let mut i = q2 + 1;
        let mut in_string = false;
        while i < bytes.len() && depth > 0 {
            let c = bytes[i] as char;
            if in_string {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            } else if c == '(' {
                if depth == 1 {
                    let ident: String = text[..i]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect();
                    if METHODS.contains(&ident.as_str()) {
                        found.push((ident.to_uppercase(), full_path(path)));
                    }
                }
                depth += 1;
            } else if c == ')' {
                depth -= 1;
            }
            i += 1;
        }
        from = i;
    }
    found
}

fn mounted_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(HTTP_SOURCES).expect("server/src/http") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            routes.extend(routes_in(&text));
        }
    }
    routes
}

fn described_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                out.insert(r.to_string());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_route_scanner_sees_methods_not_handler_bodies() {
    let text = r#"
        .route("/a/{id}", get(one).post(two))
        .route(
            "/b",
            get(|| async { Json(json!({ "get(": 1 })) }).delete(remove),
        )
        .route("/healthz", get(move |s: State<X>| ready(render(&s, post(1)))))
    "#;
    let routes: BTreeSet<_> = routes_in(text).into_iter().collect();
    let expected: BTreeSet<_> = [
        ("GET", "/api/v1/a/{id}"),
        ("POST", "/api/v1/a/{id}"),
        ("GET", "/api/v1/b"),
        ("DELETE", "/api/v1/b"),
        ("GET", "/healthz"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(routes, expected);
}

#[tokio::test]
async fn every_route_is_described_and_the_description_is_served() {
    let db = Database::new(Backend::Sqlite).await;
    let server = Server::spawn_app(&db, &[]).await;
    let res = reqwest::get(format!("{}/api/openapi.json", server.url))
        .await
        .expect("openapi.json");
    assert_eq!(res.status().as_u16(), 200);
    let doc: Value = res.json().await.expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");

    let mounted = mounted_routes();
    assert!(
        mounted.len() > 60,
        "the scan found {} routes",
        mounted.len()
    );
    let described = described_routes(&doc);
    let missing: Vec<_> = mounted.difference(&described).collect();
    let extra: Vec<_> = described.difference(&mounted).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the description: {missing:?}"
    );
    assert!(extra.is_empty(), "described but not mounted: {extra:?}");

    // Every operation is named and answers something; every reference
    // resolves.
    let mut ids = BTreeSet::new();
    for methods in doc["paths"].as_object().expect("paths").values() {
        for op in methods.as_object().expect("methods").values() {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the components: {r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    // The wire types are there by their names.
    for name in [
        "NewTask",
        "TaskDetail",
        "ClaimRequest",
        "RunDetail",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }

    let page = reqwest::get(format!("{}/api/docs", server.url))
        .await
        .expect("docs");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<code>/api/v1/tasks/{id}/cancel</code>"),
        "{html}"
    );
    assert!(html.contains("<code>ClaimRequest</code>"), "{html}");
}
