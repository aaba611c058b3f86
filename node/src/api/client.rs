//! The API client the CLI uses: finds the running daemon through the home directory.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::home::Home;

/// Why a CLI call could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The home has no node.
    #[error("no node in {0}: run `samizdat init` (or `samizdat run`) first")]
    NotInitialized(String),
    /// The daemon is not running.
    #[error("no samizdat daemon is running for {0}: start it with `samizdat --home {0} run`")]
    NoDaemon(String),
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// Something else went wrong talking to the daemon.
    #[error("talking to the daemon: {0}")]
    Transport(String),
}

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
    home: String,
}

impl ApiClient {
    /// Connects to the daemon of `home` (reads `api.addr` and `api.token`).
    pub fn from_home(home: &Home) -> Result<Self, ClientError> {
        let shown = home.path().display().to_string();
        if !home.is_initialized() {
            return Err(ClientError::NotInitialized(shown));
        }
        let read = |p: std::path::PathBuf| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|_| ClientError::NoDaemon(shown.clone()))
        };
        let addr = read(home.api_addr_file())?;
        let token = read(home.api_token_file())?;
        Self::new(&addr, &token, shown)
    }

    /// A client for an explicit address and token.
    pub fn new(addr: &str, token: &str, home: String) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            base: format!("http://{addr}"),
            token: token.to_string(),
            http,
            home,
        })
    }

    /// Sends a request and decodes the JSON answer.
    pub async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        self.decode(resp).await
    }

    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ClientError> {
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            if status == StatusCode::UNAUTHORIZED {
                // A stale api.token means an old daemon's files: most likely none is running.
                return Err(ClientError::Api {
                    status: status.as_u16(),
                    message: format!("{message} (is the daemon for {} still running?)", self.home),
                });
            }
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Transport(format!("unexpected answer: {e}")))
    }

    /// GET and decode.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request::<(), T>(Method::GET, path, None).await
    }

    /// POST a JSON body and decode.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Streams a local file to `path` as the request body; decodes the JSON answer.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
    ) -> Result<T, ClientError> {
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        self.decode(resp).await
    }

    /// GETs `path` and streams the body into `out`; returns the bytes written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        self.download_with_key(path, None, out).await
    }

    /// Like [`ApiClient::download`], asking the node to decrypt a private attachment with
    /// `key` (hex; sent in a header, never in the URL).
    pub async fn download_with_key(
        &self,
        path: &str,
        key: Option<&str>,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(k) = key {
            req = req.header(crate::api::KEY_HEADER, k);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        if !resp.status().is_success() {
            return self.decode::<serde_json::Value>(resp).await.map(|_| 0);
        }
        let mut n = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| ClientError::Transport(e.to_string()))?;
            out.write_all(&piece)
                .await
                .map_err(|e| ClientError::Transport(format!("writing output: {e}")))?;
            n += piece.len() as u64;
        }
        Ok(n)
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::NoDaemon(self.home.clone())
        } else {
            ClientError::Transport(e.to_string())
        }
    }

    /// DELETE and decode.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request::<(), T>(Method::DELETE, path, None).await
    }
}
