//! Syslog drains (`syslog://`, `syslog+tls://`): octet-counted RFC 5424 frames on one long-lived TCP (or TLS)
//! connection, reconnecting by itself with backoff.

use std::sync::Arc;

use rustls::ClientConfig;
use tokio::io::AsyncWriteExt;

use super::stream::Stream;
use super::url::DrainUrl;
use super::{Backoff, DrainSettings, Health};

pub struct SyslogSender {
    url: DrainUrl,
    tls: Arc<ClientConfig>,
    settings: Arc<DrainSettings>,
    connection: Option<Stream>,
    backoff: Backoff,
}

impl SyslogSender {
    pub fn new(
        url: DrainUrl,
        tls: Arc<ClientConfig>,
        settings: Arc<DrainSettings>,
    ) -> SyslogSender {
        let backoff = Backoff::new(&settings);
        SyslogSender {
            url,
            tls,
            settings,
            connection: None,
            backoff,
        }
    }

    /// Writes `bytes`, whole frames starting at each of `frames`, retrying until they are written. After a
    /// connection breaks, writing resumes on a new one from the first frame the old one did not take whole (the
    /// receiver drops a frame cut short).
    pub async fn send(&mut self, bytes: &[u8], frames: &[usize], health: &Health) {
        let mut from = 0;
        while from < bytes.len() {
            if self.connection.as_mut().is_some_and(Stream::peer_closed) {
                self.connection = None;
            }
            let connection = match &mut self.connection {
                Some(connection) => connection,
                None => match Stream::connect(&self.url, &self.tls, self.settings.timeout).await {
                    Ok(connection) => self.connection.insert(connection),
                    Err(e) => {
                        health.failed(&format!("cannot connect: {e}"));
                        self.backoff.wait().await;
                        continue;
                    }
                },
            };
            // Each write must make progress within the timeout: a receiver that is merely slow keeps its
            // connection, one that stopped reading altogether loses it.
            match tokio::time::timeout(self.settings.timeout, connection.write(&bytes[from..]))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                    let reason = "the connection broke while writing";
                    self.connection = None;
                    health.failed(reason);
                    // Back to the start of the frame that was cut.
                    from = frames[..frames.partition_point(|&start| start <= from)]
                        .last()
                        .copied()
                        .unwrap_or(0);
                    self.backoff.wait().await;
                }
                Ok(Ok(written)) => {
                    from += written;
                    self.backoff.reset();
                    health.ok();
                }
            }
        }
        // TLS keeps what it was given until flushed (plain TCP has nothing to flush).
        if let Some(connection) = &mut self.connection {
            let flushed = tokio::time::timeout(self.settings.timeout, connection.flush()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                self.connection = None;
                health.failed("the connection broke while flushing");
            }
        }
    }

    /// Flushes TLS and closes the connection (the drain is stopping).
    pub async fn close(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            let _ = tokio::time::timeout(self.settings.timeout, connection.shutdown()).await;
        }
    }
}
