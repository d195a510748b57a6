//! A small JSON client for the REST API that turns error bodies into
//! readable messages.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// `https` servers must present a certificate signed by the system's
    /// roots or by a CA of `ca_file` (`--ca-file`, PEM).
    pub fn new(base: &str, token: Option<String>, ca_file: Option<&Path>) -> Result<Self> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_file {
            for cert in load_ca_file(path)
                .with_context(|| format!("--ca-file (DROVER_CA_FILE) {}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: builder.build().context("cannot set up HTTPS")?,
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

    pub async fn patch<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        decode(
            self.req(reqwest::Method::PATCH, path)
                .json(body)
                .send()
                .await,
        )
        .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.req(reqwest::Method::DELETE, path).send().await).await
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
}

/// The PEM certificates of a CA file, each checked so a bad file is
/// reported as such rather than as an unreachable server.
fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).context("cannot read it")?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).context("not a PEM bundle")?;
    if certs.is_empty() {
        return Err(anyhow!(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert.clone())
            .build()
            .with_context(|| format!("certificate {} is not a usable certificate", i + 1))?;
    }
    Ok(certs)
}

async fn decode<T: DeserializeOwned>(response: reqwest::Result<reqwest::Response>) -> Result<T> {
    let response = response.map_err(|e| anyhow!("cannot reach the server: {}", chain(&e)))?;
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

/// An error with its causes: a TLS failure is only named by an inner one
/// ("invalid peer certificate: UnknownIssuer").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
