//! The `http` handler: calls an HTTP endpoint once per task.
//!
//! Contract with the endpoint:
//! - the payload is the JSON body (no body for GET and HEAD), with the
//!   configured headers plus `X-Drover-Task-Id`, `X-Drover-Task-Type` and
//!   `X-Drover-Attempt`;
//! - a 2xx answer is success; its body is the output (JSON if it parses,
//!   else the trimmed text; empty → `null`). Bodies over
//!   [`MAX_OUTPUT_BYTES`] fail the attempt (not retryable);
//! - any other status fails with `HTTP <status>: <end of the body>`;
//!   retryable for 5xx, 408 and 429, not retryable for other 4xx (the same
//!   request would be refused again);
//! - connection errors fail (retryable).

use std::time::Duration;

use drover_protocol::agent::Outcome;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::{
    failed, failed_for_good, output_value, TaskContext, ERROR_TAIL_BYTES, MAX_OUTPUT_BYTES,
};
use crate::client::{describe, tail};
use crate::config::HttpConfig;

/// An endpoint to call per task, from `[handlers.x] kind = "http"`.
#[derive(Debug, Clone)]
pub struct HttpHandler {
    client: reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    timeout: Option<Duration>,
}

impl HttpHandler {
    /// Fails only on values the config validation already rejects.
    pub fn new(config: &HttpConfig, client: reqwest::Client) -> Result<Self, String> {
        let method = Method::from_bytes(config.method.as_bytes())
            .map_err(|_| format!("{:?} is not an HTTP method", config.method))?;
        let url = Url::parse(&config.url).map_err(|e| format!("{:?}: {e}", config.url))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name} is not valid"))?;
            headers.insert(name, value);
        }
        Ok(Self {
            client,
            method,
            url,
            headers,
            timeout: config.timeout_ms.map(Duration::from_millis),
        })
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Makes the call for one task. The time limit is applied by the caller.
    pub async fn run(&self, ctx: &TaskContext) -> Outcome {
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header("X-Drover-Task-Id", ctx.task_id.to_string())
            .header("X-Drover-Task-Type", ctx.task_type.as_str())
            .header("X-Drover-Attempt", ctx.attempt.to_string());
        if self.method != Method::GET && self.method != Method::HEAD {
            request = request.json(&ctx.payload);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return failed(format!(
                    "{} {} failed: {}",
                    self.method,
                    self.url,
                    describe(&e)
                ))
            }
        };
        let status = response.status();
        let mut body = Vec::new();
        let mut overflow = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_OUTPUT_BYTES {
                        overflow = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return failed(format!(
                        "reading the response of {} {} failed: {}",
                        self.method,
                        self.url,
                        describe(&e)
                    ))
                }
            }
        }
        if status.is_success() {
            if overflow {
                return failed_for_good(format!(
                    "response body exceeded the {MAX_OUTPUT_BYTES}-byte output limit"
                ));
            }
            return Outcome::Succeeded {
                output: output_value(&body),
            };
        }
        let detail = tail(&body, ERROR_TAIL_BYTES);
        let error = if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        };
        let retryable = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        Outcome::Failed { error, retryable }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-request HTTP server answering `status` and `body`; returns its
    /// URL and, once served, the raw request it received.
    async fn serve_once(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let handle = tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return String::new();
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            loop {
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if rest.len() >= len {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
            String::from_utf8_lossy(&request).to_string()
        });
        (format!("http://{addr}/hook"), handle)
    }

    fn handler(method: &str, url: &str) -> HttpHandler {
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_string(), "Bearer x".to_string());
        HttpHandler::new(
            &HttpConfig {
                method: method.into(),
                url: url.into(),
                headers,
                timeout_ms: None,
            },
            reqwest::Client::new(),
        )
        .expect("valid handler")
    }

    fn ctx(payload: Value) -> TaskContext {
        TaskContext {
            task_id: 9,
            task_type: "notify".into(),
            attempt: 1,
            payload,
            timeout: None,
            log: None,
        }
    }

    #[tokio::test]
    async fn posts_the_payload_and_returns_the_json_body() {
        let (url, server) = serve_once("200 OK", r#"{"ok":true}"#).await;
        let out = handler("POST", &url).run(&ctx(json!({"to": "ops"}))).await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!({"ok": true})
            }
        );
        let request = server.await.expect("served").to_ascii_lowercase();
        assert!(request.starts_with("post /hook "), "{request}");
        assert!(request.contains("authorization: bearer x"), "{request}");
        assert!(request.contains("x-drover-task-id: 9"), "{request}");
        assert!(request.ends_with(r#"{"to":"ops"}"#), "{request}");
    }

    #[tokio::test]
    async fn get_sends_no_body_and_text_is_a_string() {
        let (url, server) = serve_once("200 OK", "pong\n").await;
        let out = handler("GET", &url).run(&ctx(json!({"ignored": 1}))).await;
        assert_eq!(
            out,
            Outcome::Succeeded {
                output: json!("pong")
            }
        );
        let request = server.await.expect("served");
        assert!(request.ends_with("\r\n\r\n"), "{request}");
    }

    #[tokio::test]
    async fn error_statuses_fail() {
        let (url, _server) = serve_once("503 Service Unavailable", "try later").await;
        let out = handler("POST", &url).run(&ctx(Value::Null)).await;
        assert_eq!(
            out,
            Outcome::Failed {
                error: "HTTP 503 Service Unavailable: try later".into(),
                retryable: true
            }
        );
        let (url, _server) = serve_once("400 Bad Request", "").await;
        let out = handler("POST", &url).run(&ctx(Value::Null)).await;
        assert_eq!(
            out,
            Outcome::Failed {
                error: "HTTP 400 Bad Request".into(),
                retryable: false
            }
        );
    }

    #[tokio::test]
    async fn connection_refused_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        drop(listener);
        let out = handler("POST", &format!("http://{addr}/"))
            .run(&ctx(Value::Null))
            .await;
        assert!(
            matches!(
                out,
                Outcome::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{out:?}"
        );
    }
}
