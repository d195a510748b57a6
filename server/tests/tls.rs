//! TLS end to end: a server terminating HTTPS itself with a certificate from
//! a private CA, an agent and the CLI trusting that CA through `--ca-file`,
//! and everything that must refuse: clients trusting another CA, plain HTTP
//! against the TLS port, half a TLS configuration. Also PostgreSQL over TLS
//! (`sslmode=require`/`verify-full`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use support::*;

/// A private CA, and files of its certificate and of a server certificate
/// (for `localhost` and `127.0.0.1`) it signed.
struct Pki {
    ca_pem: String,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .expect("server params");
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name
            .push(DnType::CommonName, "drover test server");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf = leaf.signed_by(&leaf_key, &ca).expect("server certificate");

        let pki = Self {
            ca_pem: ca.pem(),
            ca_file: dir.join(format!("{name}-ca.pem")),
            cert_file: dir.join(format!("{name}-server.pem")),
            key_file: dir.join(format!("{name}-server-key.pem")),
        };
        std::fs::write(&pki.ca_file, &pki.ca_pem).expect("write CA");
        std::fs::write(&pki.cert_file, leaf.pem()).expect("write certificate");
        std::fs::write(&pki.key_file, leaf_key.serialize_pem()).expect("write key");
        pki
    }

    fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DROVER_TLS_CERT", self.cert_file.display().to_string()),
            ("DROVER_TLS_KEY", self.key_file.display().to_string()),
        ]
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Runs a binary to its end (at most `within`), killing it if it does not exit.
fn run_to_end(mut cmd: Command, within: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} did not exit within {within:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `drover` CLI against `url`, as the operator.
fn cli(url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("drover"));
    cmd.arg("--server")
        .arg(url)
        .args(args)
        .env("DROVER_TOKEN", API_TOKEN)
        .env_remove("DROVER_CA_FILE");
    run_to_end(cmd, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_works_over_https_and_clients_refuse_a_server_their_ca_did_not_sign() {
    let db = Database::new(Backend::Sqlite).await;
    let ours = Pki::new(db.dir(), "ours");
    let theirs = Pki::new(db.dir(), "theirs");
    let mut env: Vec<(&str, String)> = ours.server_env();
    env.push(("DROVER_ADMIN_PASSWORD", "correct horse".into()));
    env.extend(fast_timeouts().into_iter().map(|(k, v)| (k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = Server::start_https(&db, &env, &ours.ca_pem).await;
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // Plain HTTP against the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.port))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP was answered on the TLS port: {plain:?}"
    );
    // A client with only the system's roots does not trust the private CA.
    let system_only = reqwest::Client::new()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect_err("the private CA is not a system root");
    assert!(
        format!("{system_only:?}").contains("UnknownIssuer"),
        "{system_only:?}"
    );

    // An agent trusting another CA refuses the server: it never registers,
    // so it gets no work, and its log says why.
    let dir = TempDir::new("drover_tls_agents");
    let stranger = AgentProcess::start_with(
        &server,
        &dir.0,
        "stranger",
        &agent_config(1, &[]),
        &["--ca-file", path_str(&theirs.ca_file)],
    );
    eventually(
        Duration::from_secs(20),
        "the stranger agent to log a certificate error",
        || {
            let log = stranger.log_text();
            async move { log.contains("invalid peer certificate").then_some(()) }
        },
    )
    .await;
    assert!(
        stranger.log_text().contains("UnknownIssuer"),
        "{}",
        stranger.log_text()
    );
    assert!(server.agents().await.is_empty(), "nobody registered yet");

    // The agent trusting our CA registers and runs a task over HTTPS.
    let _agent = AgentProcess::start_with(
        &server,
        &dir.0,
        "trusting",
        &agent_config(1, &[]),
        &["--ca-file", path_str(&ours.ca_file)],
    );
    eventually(
        Duration::from_secs(20),
        "the trusting agent to register",
        || {
            let server = &server;
            async move { (!server.agents().await.is_empty()).then_some(()) }
        },
    )
    .await;
    let ids = server
        .submit(vec![new_task("echo", json!({ "over": "https" }))])
        .await;
    server.wait_finished(1, Duration::from_secs(30)).await;
    let task = server.task(ids[0]).await;
    assert_eq!(task.task.status.as_str(), "succeeded", "{task:?}");
    assert_eq!(task.task.result, Some(json!({ "over": "https" })));
    let agents = server.agents().await;
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0].name, "trusting");
    assert_eq!(task.task.agent_id, Some(agents[0].id));
    assert!(
        !stranger.log_text().contains("registered;"),
        "{}",
        stranger.log_text()
    );

    // Requests over the server's own TLS count as HTTPS whatever the client
    // claims, so sign-in cookies are `Secure`.
    let signed_in = server
        .http
        .post(format!("{}/api/v1/session", server.url))
        .header("x-forwarded-proto", "http")
        .json(&json!({ "name": "admin", "password": "correct horse" }))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status().as_u16(), 201);
    let cookies: Vec<_> = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert!(!cookies.is_empty());
    for c in &cookies {
        assert!(c.contains("; Secure"), "not Secure over HTTPS: {c}");
    }

    // The CLI: our CA works; theirs, or an unreadable CA file, fails clearly.
    let ok = cli(
        &server.url,
        &["--ca-file", path_str(&ours.ca_file), "workflow", "list"],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let refused = cli(
        &server.url,
        &["--ca-file", path_str(&theirs.ca_file), "workflow", "list"],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("UnknownIssuer"),
        "{}",
        text(&refused)
    );
    let missing = dir.0.join("no-such-ca.pem");
    let bad = cli(
        &server.url,
        &["--ca-file", path_str(&missing), "workflow", "list"],
    );
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));
    assert!(
        text(&bad).contains("--ca-file") && text(&bad).contains("no-such-ca.pem"),
        "{}",
        text(&bad)
    );

    // An agent given an unusable CA file stops at start with exit code 2.
    let not_pem = dir.0.join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let mut agent = Command::new(bin("drover-agent"));
    agent
        .args(["--server", &server.url, "--token", ENROLL_TOKEN])
        .args(["--config", path_str(&dir.0.join("trusting.toml"))])
        .args(["--ca-file", path_str(&not_pem)])
        .args(["--state-dir", path_str(&dir.0.join("refused-state"))]);
    let out = run_to_end(agent, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--ca-file") && text(&out).contains("no PEM certificate"),
        "{}",
        text(&out)
    );

    // Graceful shutdown still works with TLS (the agent's long-poll is open).
    let status = server.stop();
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    assert!(
        server.log_text().contains("stopped"),
        "{}",
        server.log_text()
    );
}

/// `drover-server` with `env`, expected to refuse to start.
fn server_refuses(db: &Database, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(bin("drover-server"));
    cmd.env("DROVER_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("DROVER_DATABASE_URL", &db.url)
        .env("DROVER_DATA_DIR", db.dir().join("refused"))
        .env("DROVER_API_TOKEN", API_TOKEN)
        .env("DROVER_ENROLLMENT_TOKEN", ENROLL_TOKEN)
        .env("DROVER_ADMIN_PASSWORD", "correct horse")
        .env_remove("DROVER_TLS_CERT")
        .env_remove("DROVER_TLS_KEY")
        .envs(env.iter().copied());
    let out = run_to_end(cmd, Duration::from_secs(60));
    assert!(!out.status.success(), "started anyway:\n{}", text(&out));
    text(&out)
}

#[tokio::test]
async fn server_refuses_half_or_unusable_tls_settings() {
    let db = Database::new(Backend::Sqlite).await;
    let pki = Pki::new(db.dir(), "ours");
    let (cert, key) = (path_str(&pki.cert_file), path_str(&pki.key_file));

    let e = server_refuses(&db, &[("DROVER_TLS_CERT", cert)]);
    assert!(
        e.contains("--tls-cert (DROVER_TLS_CERT) needs --tls-key"),
        "{e}"
    );
    let e = server_refuses(&db, &[("DROVER_TLS_KEY", key)]);
    assert!(
        e.contains("--tls-key (DROVER_TLS_KEY) needs --tls-cert"),
        "{e}"
    );

    // The key as the certificate, and the certificate as the key.
    let e = server_refuses(&db, &[("DROVER_TLS_CERT", key), ("DROVER_TLS_KEY", key)]);
    assert!(e.contains("--tls-cert") && e.contains(key), "{e}");
    let e = server_refuses(&db, &[("DROVER_TLS_CERT", cert), ("DROVER_TLS_KEY", cert)]);
    assert!(e.contains("--tls-key") && e.contains(cert), "{e}");
    let missing = db.dir().join("missing.pem");
    let e = server_refuses(
        &db,
        &[
            ("DROVER_TLS_CERT", path_str(&missing)),
            ("DROVER_TLS_KEY", key),
        ],
    );
    assert!(e.contains("missing.pem"), "{e}");
    // A key that is not the certificate's.
    let other = Pki::new(db.dir(), "other");
    let e = server_refuses(
        &db,
        &[
            ("DROVER_TLS_CERT", cert),
            ("DROVER_TLS_KEY", path_str(&other.key_file)),
        ],
    );
    assert!(e.contains("do not make a usable pair"), "{e}");
}

/// PostgreSQL's own settings, read over a plain connection.
async fn pg_setting(db: &Database, name: &str) -> String {
    use sqlx::Row;
    let mut c = db.pg().await;
    sqlx::query(&format!("SHOW {name}"))
        .fetch_one(&mut c)
        .await
        .expect("SHOW")
        .get::<String, _>(0)
}

#[tokio::test]
async fn postgres_connections_use_tls_when_the_url_asks() {
    let db = Database::new(Backend::Postgres).await;
    let pki = Pki::new(db.dir(), "ours");
    let with = |params: &str| {
        // `localhost`, the name PostgreSQL's certificate usually carries.
        let url = db.url.replacen("@127.0.0.1:", "@localhost:", 1);
        format!("{url}?{params}")
    };

    if pg_setting(&db, "ssl").await != "on" {
        // Nothing to connect to over TLS; still, the build must try TLS
        // rather than say it has none.
        let require = with("sslmode=require");
        let e = server_refuses(&db, &[("DROVER_DATABASE_URL", require.as_str())]);
        assert!(!e.contains("without TLS support"), "{e}");
        eprintln!("PostgreSQL has ssl=off: only checked that TLS is built in");
        return;
    }

    // sqlx trusts the system's roots besides `sslrootcert`, and Debian
    // files PostgreSQL's self-signed certificate among them; an empty
    // system store makes `sslrootcert` the only trusted CA.
    let empty = db.dir().join("empty-system-roots");
    std::fs::create_dir_all(&empty).expect("dir");
    std::fs::write(empty.join("none.pem"), "").expect("file");
    let no_roots = [
        ("SSL_CERT_DIR", path_str(&empty).to_string()),
        (
            "SSL_CERT_FILE",
            path_str(&empty.join("none.pem")).to_string(),
        ),
    ];
    let env_with = |url: &str| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = no_roots
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push(("DROVER_DATABASE_URL".into(), url.to_string()));
        env
    };

    // A CA that did not sign PostgreSQL's certificate is refused.
    let wrong_ca = with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        path_str(&pki.ca_file)
    ));
    let env = env_with(&wrong_ca);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e = server_refuses(&db, &env);
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // verify-full against PostgreSQL's own (self-signed) certificate works,
    // and every connection the server holds is encrypted.
    let cert_file = pg_setting(&db, "ssl_cert_file").await;
    let verified = with(&format!("sslmode=verify-full&sslrootcert={cert_file}"));
    let env = env_with(&verified);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(&db, &env).await;
    assert_eq!(server.stats().await.queued, 0);
    let mut c = db.pg().await;
    let name = db
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let (encrypted, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*)
           FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&mut c)
    .await
    .expect("pg_stat_ssl");
    assert!(total > 0, "the server holds no connection");
    assert_eq!(
        encrypted, total,
        "some of the server's connections are plain"
    );
    drop(server);

    // sslmode=require (encrypt, no verification) works too.
    let require = with("sslmode=require");
    let server = Server::start(&db, &[("DROVER_DATABASE_URL", require.as_str())]).await;
    assert_eq!(server.stats().await.queued, 0);
}
