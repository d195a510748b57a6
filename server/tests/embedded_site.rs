//! A server built with the dashboard inside (feature `embed-site`, as the
//! test suite and the release packages build it) serves the dashboard's
//! files with no site directory anywhere: compressed (ahead of time in a
//! release build, as it is sent in this debug one), with an `ETag` that a
//! revalidation answers with 304, never reused unasked. Pages and the 404
//! page still render.
#![cfg(feature = "embed-site")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use support::{bin, free_port, Backend, Database, API_TOKEN, ENROLL_TOKEN};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_dashboard_files_come_from_inside_the_binary() {
    let db = Database::new(Backend::Sqlite).await;
    // An empty working directory: nothing to read a site from.
    let cwd = tempfile::tempdir().expect("cwd");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(db.dir().join("embedded.log")).expect("log");
    let mut child = Killed(
        Command::new(bin("drover-server"))
            .current_dir(cwd.path())
            .env_remove("DROVER_SITE_ROOT")
            .env("DROVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("DROVER_DATABASE_URL", &db.url)
            .env("DROVER_DATA_DIR", db.dir().join("data"))
            .env("DROVER_API_TOKEN", API_TOKEN)
            .env("DROVER_ENROLLMENT_TOKEN", ENROLL_TOKEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn drover-server"),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http.get(format!("{url}/healthz")).send().await, Ok(r) if r.status().is_success())
    {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("drover-server exited with {status}");
        }
        assert!(Instant::now() < deadline, "drover-server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let plain = http
        .get(format!("{url}/pkg/drover.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(plain.status().as_u16(), 200);
    let plain_len = plain.bytes().await.expect("body").len();
    assert!(plain_len > 1000, "the script is {plain_len} bytes");

    let res = http
        .get(format!("{url}/pkg/drover.js"))
        .header(ACCEPT_ENCODING, "br, gzip")
        .send()
        .await
        .expect("script");
    assert_eq!(res.status().as_u16(), 200);
    let header = |res: &reqwest::Response, name| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    assert_eq!(header(&res, CONTENT_ENCODING).as_deref(), Some("br"));
    assert_eq!(header(&res, CACHE_CONTROL).as_deref(), Some("no-cache"));
    let etag = header(&res, ETAG).expect("an ETag");
    let sent = res.bytes().await.expect("body").len();
    assert!(sent < plain_len / 2, "{sent} of {plain_len} bytes sent");

    let again = http
        .get(format!("{url}/pkg/drover.js"))
        .header(ACCEPT_ENCODING, "br, gzip")
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("revalidation");
    assert_eq!(again.status().as_u16(), 304);

    // The wasm the script loads is there too, and what is not a file is
    // the dashboard's 404 page.
    let wasm = http
        .get(format!("{url}/pkg/drover.wasm"))
        .send()
        .await
        .expect("wasm");
    assert_eq!(wasm.status().as_u16(), 200);
    let missing = http
        .get(format!("{url}/pkg/nothing.wasm"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status().as_u16(), 404);
    let signin = http
        .get(format!("{url}/signin"))
        .send()
        .await
        .expect("sign-in page");
    assert_eq!(signin.status().as_u16(), 200);
    let html = signin.text().await.expect("html");
    assert!(html.contains("/pkg/drover.js"), "{html}");
}
