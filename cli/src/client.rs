//! A small JSON client for the REST API that turns error bodies into
//! readable messages.

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        if base.starts_with("https://") {
            return Err(anyhow!(
                "https is not supported by this build; use http:// or a local proxy"
            ));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.req(reqwest::Method::GET, path).send().await).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        decode(
            self.req(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await,
        )
        .await
    }

    pub async fn post_text<T: DeserializeOwned>(&self, path: &str, body: String) -> Result<T> {
        decode(
            self.req(reqwest::Method::POST, path)
                .body(body)
                .send()
                .await,
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        decode(self.req(reqwest::Method::DELETE, path).send().await).await
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Result<reqwest::Response>) -> Result<T> {
    let response = response.map_err(|e| anyhow!("cannot reach the server: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let err = &body["error"];
        let field = err["field"]
            .as_str()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        let message = err["message"].as_str().unwrap_or("no details");
        return Err(anyhow!(
            "{} {}{field}: {message}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    Ok(serde_json::from_value(body)?)
}
