//! Helpers shared by the unit tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory path under the system temp dir (not created), removed
/// with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "drover-agent-test-{tag}-{}-{}-{}",
            std::process::id(),
            crate::time::now_us(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Self(dir)
    }

    /// Like [`TempDir::new`], but the directory exists.
    pub fn create(tag: &str) -> Self {
        let dir = Self::new(tag);
        if let Err(e) = std::fs::create_dir_all(&dir.0) {
            panic!("cannot create {}: {e}", dir.0.display());
        }
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request the fake server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// The bearer token, without `Bearer `.
    pub token: String,
    pub body: serde_json::Value,
}

/// What the fake server answers: status, JSON body, and how long to wait
/// before answering (to imitate a long-poll).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn ok(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            body,
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: serde_json::json!({"error": {"code": "test", "message": format!("status {status}")}}),
            delay: std::time::Duration::ZERO,
        }
    }
}

type Respond = std::sync::Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 JSON server (keep-alive, Content-Length bodies) for
/// driving the agent without the real one.
pub struct FakeServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(respond: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind: {e}"),
        };
        let url = match listener.local_addr() {
            Ok(a) => format!("http://{a}/"),
            Err(e) => panic!("no local address: {e}"),
        };
        let respond: Respond = std::sync::Arc::new(respond);
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, std::sync::Arc::clone(&respond)));
            }
        });
        Self { url, task }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut sock: tokio::net::TcpStream, respond: Respond) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        let mut token = String::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => {
                        token = value.trim().trim_start_matches("Bearer ").to_string()
                    }
                    _ => {}
                }
            }
        }
        // Body.
        let body_start = head_end + 4;
        while buf.len() < body_start + length {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = serde_json::from_slice(&buf[body_start..body_start + length])
            .unwrap_or(serde_json::Value::Null);
        buf.drain(..body_start + length);

        let reply = respond(&Request { path, token, body });
        tokio::time::sleep(reply.delay).await;
        let text = reply.body.to_string();
        let response = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            reply.status,
            text.len()
        );
        if sock.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Polls `check` every 10 ms until it holds, failing the test after `secs`.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
