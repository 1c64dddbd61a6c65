//! Changes made through any host, heard at once. Every write to the ledger and every change of placements
//! notifies [`CHANGES_CHANNEL`] in its own transaction (PostgreSQL delivers it at commit); each host listens on a
//! connection of its own ([`PgStore::on_changes`]) and starts its next cluster round then, instead of at its next
//! tick. The tick stays: a notification lost with a dropped connection is covered by the next round, and the
//! listener wakes the round once each time it (re)connects.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, Connection};

use super::PgStore;

/// The channel changes are announced on.
const CHANGES_CHANNEL: &str = "wasmdyno_changes";

/// The statement a writer runs in its transaction to announce a change (on [`CHANGES_CHANNEL`]).
pub(super) const NOTIFY_CHANGES: &str = "SELECT pg_notify('wasmdyno_changes', '')";

/// The first wait before listening again after the connection failed; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl PgStore {
    /// Wakes `wake` (`notify_one`: changes that come while nobody waits are kept as one) whenever a change is
    /// committed through any host, and once each time the listening connection is (re)established, until this
    /// store is dropped. The connection is one of its own, outside the pool, with the pool's timeouts and TLS.
    pub fn on_changes(&self, wake: Arc<Notify>) {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let shown = self.shown.clone();
        self.driver.handle.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let ended = match &tls {
                    None => match config.connect(tokio_postgres::NoTls).await {
                        Ok((client, connection)) => listen(client, connection, &wake).await,
                        Err(e) => Err(e),
                    },
                    Some(tls) => match config.connect(tls.clone()).await {
                        Ok((client, connection)) => listen(client, connection, &wake).await,
                        Err(e) => Err(e),
                    },
                };
                match ended {
                    Ok(()) => backoff = FIRST_BACKOFF,
                    Err(e) => tracing::warn!(
                        "listening for cluster changes on {shown} failed ({}); again in {backoff:?}",
                        super::describe(&e)
                    ),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }
}

/// Sends `LISTEN` through `client` and drives `connection`, waking `wake` on each notification, until the
/// connection ends (`Ok` when the server closed it).
async fn listen<S, T>(
    client: Client,
    mut connection: Connection<S, T>,
    wake: &Notify,
) -> Result<(), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let statement = format!("LISTEN {CHANGES_CHANNEL}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    let mut listened = false;
    loop {
        tokio::select! {
            done = &mut listening, if !listened => {
                done?;
                listened = true;
                // Whatever changed while this host was not listening is read by the round this starts.
                wake.notify_one();
            }
            message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
