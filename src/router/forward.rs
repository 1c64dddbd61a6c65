//! Sending a request to a chosen dyno (over a kept-alive connection, a handler, or CGI) and what can go wrong.

#[allow(unused_imports)]
use super::*;
use crate::runtime::http::HttpFailure;

/// A request with the same head as `req` and no body (for one whose body is empty).
pub(super) fn bodiless_copy(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// What a dyno answered over `upstream`.
pub(super) fn forwarded(response: Response<Incoming>, upstream: Upstream) -> Forwarded {
    Forwarded {
        response: response.map(|body| body.map_err(Into::into).boxed_unsync()),
        upstream: Some(upstream),
    }
}

/// What a dyno answered: the response head and a body still to come.
pub(super) struct Forwarded {
    pub(super) response: Response<Body>,
    pub(super) upstream: Option<Upstream>,
}

/// Why forwarding to a dyno failed.
pub(super) enum Failure {
    /// The dyno never took the connection (it is stopping, or its instance went away): nothing was sent, and
    /// here is the request back, for another dyno.
    NotTaken(Box<Request<Body>>),
    /// The dyno closed the connection before its response head (H13, or H18 while the body was being sent).
    Closed,
    /// The dyno's own deadline for a response passed first (H12, as the router's would).
    Timeout,
    /// Something that should not happen (H99).
    Platform(String),
}

impl Router {
    /// Sends the request to one dyno and returns its response head. This is the one place that talks to a dyno.
    pub(super) async fn forward(
        &self,
        dyno: &WebDyno,
        req: Request<Body>,
        keep_alive: bool,
        entry: &mut Entry,
    ) -> Result<Forwarded, Failure> {
        if let Some(handler) = &dyno.handler {
            // A `wasi:http` handler or a CGI command: called in-process, no connection.
            entry.accepted = Some(Instant::now());
            return match handler.handle(req).await {
                Ok(response) => Ok(Forwarded {
                    response,
                    upstream: None,
                }),
                Err(HttpFailure::Instantiate(e)) => Err(Failure::Platform(e)),
                Err(HttpFailure::Deadline) => Err(Failure::Timeout),
                Err(_) => Err(Failure::Closed),
            };
        }
        let listener = &dyno.listener;
        let mut req = req;
        // A request without a body (and no upgrade) goes on an idle keep-alive connection if there is one. The
        // dyno may have closed that meanwhile (a server may close an idle connection without saying so): if it
        // read none of the request, the request goes on the next one, and finally on a new connection. Once the
        // dyno has read any of it, a failure is the dyno's answer (H13): nothing is sent twice.
        let reusable = keep_alive
            && req.body().is_end_stream()
            && !req.headers().contains_key(header::UPGRADE);
        while reusable && let Some(mut conn) = self.inner.pool.take(listener).await {
            entry.accepted = Some(Instant::now());
            let again = bodiless_copy(&req);
            let read_before = conn.reads.count();
            match conn.sender.try_send_request(req).await {
                Ok(response) => {
                    let upstream =
                        Upstream::Pooled(conn, self.inner.pool.clone(), listener.clone());
                    return Ok(forwarded(response, upstream));
                }
                Err(mut e) => match e.take_message() {
                    Some(never_sent) => req = never_sent,
                    None if conn.reads.count() == read_before => req = again,
                    None => return Err(Failure::Closed),
                },
            }
        }
        let conn = match listener.connect().await {
            Ok(conn) => conn,
            Err(_) => return Err(Failure::NotTaken(Box::new(req))),
        };
        // A guest serving one connection at a time may be waiting on an idle keep-alive connection of ours:
        // if the new one is not taken promptly, close those.
        let taken = {
            let accepted = conn.accepted(listener);
            tokio::pin!(accepted);
            match tokio::time::timeout(POOL_RELEASE_AFTER, accepted.as_mut()).await {
                Ok(taken) => taken,
                Err(_) => {
                    self.inner.pool.release(listener);
                    accepted.await
                }
            }
        };
        if taken.is_err() {
            return Err(Failure::NotTaken(Box::new(req)));
        }
        entry.accepted = Some(Instant::now());
        let reads = conn.guest_reads();
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(conn)).await {
                Ok(handshake) => handshake,
                Err(e) => return Err(Failure::Platform(format!("handshake with a dyno: {e}"))),
            };
        let task = Task::new(tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        }));
        match sender.send_request(req).await {
            // A connection that carried a body or an upgrade is not reused: the dyno may answer before it has
            // read all of a body, and an upgraded one is no longer HTTP.
            Ok(response) if reusable => {
                let conn = Conn {
                    sender,
                    task,
                    reads,
                };
                let upstream = Upstream::Pooled(conn, self.inner.pool.clone(), listener.clone());
                Ok(forwarded(response, upstream))
            }
            Ok(response) => Ok(forwarded(response, Upstream::Closing(task))),
            Err(_) => Err(Failure::Closed),
        }
    }
}
