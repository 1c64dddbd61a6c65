//! Other hosts of a cluster: a request for an app with no web dyno on this host goes to the router of a host that
//! runs one, over the hosts' addresses, with the router's request timeout and codes. A forwarded request carries
//! [`FORWARDED_BY`] and is never forwarded again, so two hosts cannot pass a request back and forth.

#[allow(unused_imports)]
use super::*;

/// The header a host adds to a request it forwards: its id.
pub const FORWARDED_BY: &str = "x-wasmdyno-forwarded-by";
/// How long connecting to another host's router may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The other hosts of a cluster, as the router sees them.
pub trait Peers: Send + Sync {
    /// This host's id, sent in [`FORWARDED_BY`].
    fn this_host(&self) -> String;
    /// The hosts (id, router address) that run web dynos of `app`, other than this one.
    fn web_hosts(&self, app: &str) -> Vec<(String, SocketAddr)>;
}

impl Router {
    /// Forwards requests for apps without a web dyno here to the hosts `peers` names. Set once, before serving.
    pub fn set_peers(&self, peers: Arc<dyn Peers>) {
        let _ = self.inner.peers.set(peers);
    }

    /// The host to forward `req` for `app` to: when this host runs no web dyno of it, the request was not
    /// forwarded already, and another host runs one (in turn, when several do).
    pub(super) fn peer_for<B>(&self, app: &str, req: &Request<B>) -> Option<(String, SocketAddr)> {
        let peers = self.inner.peers.get()?;
        if req.headers().contains_key(FORWARDED_BY)
            || self
                .inner
                .manager
                .dynos(app)
                .iter()
                .any(|d| d.kind == crate::procfile::WEB_TYPE)
        {
            return None;
        }
        let hosts = peers.web_hosts(app);
        if hosts.is_empty() {
            return None;
        }
        let turn = self.inner.next_peer.fetch_add(1, Ordering::Relaxed);
        Some(hosts[turn % hosts.len()].clone())
    }

    /// Sends `req` to the router of host `host` at `addr` and passes its response on, with the router's request
    /// timeout (H12), the idle cut of a body that stalls (H15) and WebSocket upgrades relayed both ways; the router
    /// line here names the host (`dyno=host:<id>`) and is written when the response ends, the host's own router
    /// line names its dyno.
    pub(super) async fn forward_to_host(
        &self,
        mut req: Request<Body>,
        (host, addr): (String, SocketAddr),
        mut entry: Entry,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Body> {
        entry.dyno = format!("host:{host}");
        if let Some(peers) = self.inner.peers.get()
            && let Ok(this) = HeaderValue::from_str(&peers.this_host())
        {
            req.headers_mut().insert(FORWARDED_BY, this);
        }
        let deadline = tokio::time::Instant::now() + self.inner.settings.request_timeout;
        // A request without a body (and no upgrade) goes on an idle keep-alive connection to that host if there
        // is one; one the host closed meanwhile gives the request back unsent, and it goes on the next.
        let reusable = req.body().is_end_stream() && client_upgrade.is_none();
        let pool = &self.inner.peer_pool;
        while reusable && let Some((mut sender, task)) = pool.take(addr).await {
            entry.accepted = Some(Instant::now());
            match tokio::time::timeout_at(deadline, sender.try_send_request(req)).await {
                Err(_) => return entry.fail("H12", "Request timeout"),
                Ok(Ok(response)) => {
                    let upstream = Upstream::Peer(sender, task, pool.clone(), addr);
                    return self.pass_on(response.map(boxed), Some(upstream), entry, None, None);
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(never_sent) => req = never_sent,
                    None => return entry.fail("H13", "Connection closed without response"),
                },
            }
        }
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => stream,
                _ => return entry.fail("H14", "No web processes running"),
            };
        let _ = stream.set_nodelay(true);
        entry.accepted = Some(Instant::now());
        let exchange = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let task = Task::new(tokio::spawn(async move {
                let _ = connection.with_upgrades().await;
            }));
            sender
                .send_request(req)
                .await
                .map(|response| (response, sender, task))
        };
        let (response, sender, task) = match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => return entry.fail("H12", "Request timeout"),
            Ok(Err(_)) => return entry.fail("H13", "Connection closed without response"),
            Ok(Ok(answered)) => answered,
        };
        let upstream = if reusable {
            Upstream::Peer(sender, task, pool.clone(), addr)
        } else {
            Upstream::Closing(task)
        };
        self.pass_on(
            response.map(boxed),
            Some(upstream),
            entry,
            None,
            client_upgrade,
        )
    }
}

/// Another host's response body, as the router passes bodies on.
fn boxed(body: hyper::body::Incoming) -> Body {
    body.map_err(Into::into).boxed_unsync()
}
