//! HTTP drains (`http://`, `https://`): frames POSTed in batches as Logplex does, `Content-Type:
//! application/logplex-1` with `Logplex-Msg-Count`, `Logplex-Frame-Id` (the same on every retry of a batch) and
//! `Logplex-Drain-Token`, on a kept-alive HTTP/1.1 connection.
//!
//! A batch is retried with backoff until the drain takes it (any 2xx) or refuses it for good (any other answer but
//! a 5xx, 408 or 429: resending the same request cannot help; redirects are not followed), in which case its lines
//! count as lost.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use super::stream::Stream;
use super::url::DrainUrl;
use super::{Backoff, DrainSettings, Health};

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Refused for good with this status.
    Refused(StatusCode),
}

pub struct HttpSender {
    url: DrainUrl,
    tls: Arc<ClientConfig>,
    settings: Arc<DrainSettings>,
    token: String,
    authorization: Option<String>,
    connection: Option<SendRequest<Full<Bytes>>>,
    backoff: Backoff,
}

impl HttpSender {
    pub fn new(
        url: DrainUrl,
        token: &str,
        tls: Arc<ClientConfig>,
        settings: Arc<DrainSettings>,
    ) -> HttpSender {
        let authorization = url.credentials.as_ref().map(|(user, password)| {
            format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
        });
        let backoff = Backoff::new(&settings);
        HttpSender {
            url,
            tls,
            settings,
            token: token.to_owned(),
            authorization,
            connection: None,
            backoff,
        }
    }

    /// POSTs one batch of `count` frames until the drain takes it or refuses it for good.
    pub async fn send(
        &mut self,
        body: Bytes,
        count: usize,
        frame_id: &str,
        health: &Health,
    ) -> Outcome {
        loop {
            // A connection that served before may have been closed while idle: one retry on a new connection
            // right away, before backing off.
            let reused = self.connection.is_some();
            let attempt = tokio::time::timeout(
                self.settings.timeout,
                self.post(body.clone(), count, frame_id),
            )
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            match attempt {
                Ok(status) if status.is_success() => {
                    self.backoff.reset();
                    health.ok();
                    return Outcome::Delivered;
                }
                Ok(status)
                    if status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    health.failed(&format!("the drain answered {status}"));
                    self.backoff.wait().await;
                }
                Ok(status) => {
                    health.failed(&format!("the drain refused a batch with {status}"));
                    return Outcome::Refused(status);
                }
                Err(reason) => {
                    self.connection = None;
                    if !reused {
                        health.failed(&reason);
                        self.backoff.wait().await;
                    }
                }
            }
        }
    }

    async fn post(
        &mut self,
        body: Bytes,
        count: usize,
        frame_id: &str,
    ) -> Result<StatusCode, String> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let stream = Stream::connect(&self.url, &self.tls, self.settings.timeout)
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("cannot start HTTP: {e}"))?;
                // Ends when the sender is dropped or the connection closes.
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                self.connection.insert(sender)
            }
        };
        connection
            .ready()
            .await
            .map_err(|e| format!("the connection closed: {e}"))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.url.target)
            .header(header::HOST, self.url.authority())
            .header(header::CONTENT_TYPE, "application/logplex-1")
            .header(
                header::USER_AGENT,
                concat!("wasmdyno-logplex/", env!("CARGO_PKG_VERSION")),
            )
            .header("logplex-msg-count", count)
            .header("logplex-frame-id", frame_id)
            .header("logplex-drain-token", &self.token);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        let response = connection
            .send_request(request)
            .await
            .map_err(|e| format!("the request failed: {e}"))?;
        let status = response.status();
        // Read the answer to its end (and drop it) so the connection can serve the next batch.
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| format!("the answer broke off: {e}"))?;
        }
        Ok(status)
    }
}

/// Standard base64 with padding (RFC 4648), for Basic authorization.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
