//! What web dynos that do not listen have in common: a [`WebHandler`] takes a request and gives a response,
//! for the router (and for hosts that embed wasmdyno) to call.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use hyper::{Request, Response};

use super::cgi::CgiDyno;
use super::http::{HttpDyno, HttpFailure};

pub use super::body::BoxError;

/// A response body from a web dyno.
pub type ResponseBody = super::body::Body;

/// A web dyno served by calls rather than by a listening program.
#[derive(Clone)]
pub enum WebHandler {
    /// A `wasi:http` handler component with its warm instances.
    Http(Arc<HttpDyno>),
    /// A CGI command run per request.
    Cgi(Arc<CgiDyno>),
    /// A component listening on this loopback port with `wasi:sockets` (it binds `$PORT`).
    Port(u16),
}

impl WebHandler {
    /// Serves one request with this web dyno.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<ResponseBody>, HttpFailure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        match self {
            WebHandler::Http(dyno) => dyno
                .handle(request.map(|body| {
                    body.map_err(|e| {
                        wasmtime_wasi_http::Error::InternalError(Some(e.into().to_string()))
                    })
                }))
                .await
                .map(|response| response.map(|body| body.map_err(BoxError::from).boxed_unsync())),
            WebHandler::Cgi(dyno) => dyno.handle(request).await,
            WebHandler::Port(port) => {
                let lost =
                    |e: &dyn std::fmt::Display| HttpFailure::Trap(format!("127.0.0.1:{port}: {e}"));
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map_err(|e| lost(&e))?;
                let _ = stream.set_nodelay(true);
                let (mut sender, connection) = hyper::client::conn::http1::handshake(
                    wasmtime_wasi_http::io::TokioIo::new(stream),
                )
                .await
                .map_err(|e| lost(&e))?;
                tokio::spawn(connection);
                let response = sender.send_request(request).await.map_err(|e| lost(&e))?;
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
        }
    }

    /// Stops taking requests and waits up to `timeout` for those in flight; false if some were still running.
    pub async fn close(&self, timeout: std::time::Duration) -> bool {
        match self {
            WebHandler::Http(dyno) => dyno.close(timeout).await,
            WebHandler::Cgi(dyno) => dyno.close(timeout).await,
            // The process behind the port is stopped as any process is.
            WebHandler::Port(_) => true,
        }
    }
}
